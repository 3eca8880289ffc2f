"""DiffFit (Xie et al. 2023, "DiffFit: Unlocking Transferability of Large Diffusion Models via Simple
Parameter-Efficient Fine-Tuning", ICCV): the backbone's biases and normalisation layers train, and each block
gets two learnable per-channel scale factors gamma, one on the attention branch and one on the MLP branch of
its residual connections (`x + gamma * branch(x)`), initialised to 1 so the model starts at the backbone's
function. Plus a new head.

On ViT-B/16 with 100 classes: biases 12 x 11 x 768 + 2 x 768 = 102,912 (those BitFit trains), the LayerNorm
weights 25 x 768 = 19,200, gammas 12 x 2 x 768 = 18,432, and the head's 76,900: 217,444 trainable
(140,544 without the head: the 0.14M of V-PETL Bench's DiffFit row).

Departure: the paper tunes a DiT (its gammas sit on DiT's blocks and it also tunes DiT's class embedding);
here the gammas sit on a ViT block's two residual branches, as timm's LayerScale `ls1` and `ls2`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from strategies import register
from strategies.base import Strategy
from strategies.recipes import (
    PEFT_PROTOCOL,
    PEFT_PROTOCOL_SOURCE,
    PETL_STUDY_LR,
    PETL_STUDY_LR_SOURCE,
    adamw_grid_with,
)

if TYPE_CHECKING:
    from torch import nn

GAMMA_INIT = 1.0  # DiffFit initialises the scale factors to 1 (Xie et al. 2023, Sec. 3.2)


def _add_gamma(block: nn.Module, attribute: str, width: int, like: nn.Parameter) -> None:
    """Put a trainable per-channel gamma (init 1) on the residual branch after `attribute` (ls1 or ls2)."""
    from timm.layers import LayerScale
    from torch import nn

    gamma = LayerScale(width, init_values=GAMMA_INIT).to(device=like.device, dtype=like.dtype)
    present = getattr(block, attribute)
    # A block without layer scale has nn.Identity there; one with it keeps its own (frozen) scale too.
    setattr(block, attribute, gamma if isinstance(present, nn.Identity) else nn.Sequential(present, gamma))


@register
class DiffFit(Strategy):
    name = "difffit"
    family = "selective"
    description = (
        "DiffFit: biases, norms and a per-channel scale (init 1) on each block's attention and MLP "
        "branch train; new head"
    )
    defaults = PEFT_PROTOCOL
    source = (
        f"Xie et al. 2023 (DiffFit: gamma initialised to 1); {PEFT_PROTOCOL_SOURCE}; {PETL_STUDY_LR_SOURCE} "
        "(DiffFit's own runs tune a DiT, not a classifier)"
    )

    @classmethod
    def search_space(cls) -> dict[str, tuple]:
        # DiffFit's paper fine-tunes DiT image generators; its VTAB-1k runs are Mai et al. 2025's, whose grid
        # reaches 1e-2 (_protocol.py).
        return {"lr": adamw_grid_with(PETL_STUDY_LR)}

    def prepare(self, model: nn.Module) -> nn.Module:
        from strategies._selective import train_selected
        from strategies.bitfit import is_bias
        from strategies.norm import norm_types
        from strategies.vit import require_vit_blocks

        vit = require_vit_blocks(model, self.name, ("ls1", "ls2"))
        norms = norm_types()
        train_selected(
            vit,
            lambda name, module, _param: is_bias(name) or isinstance(module, norms),
            self.name,
            "bias or normalisation parameters",
        )
        for block in vit.blocks:
            like = next(block.parameters())
            for attribute in ("ls1", "ls2"):
                _add_gamma(block, attribute, vit.embed_dim, like)
        return vit
