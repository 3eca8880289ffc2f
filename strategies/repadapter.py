"""RepAdapter (Luo et al. 2023, "Towards Efficient Visual Adaption via Structural Re-parameterization";
reference code github.com/luogen1996/RepAdapter, `repblock`): a linear adapter (down to 8, group-wise up in 2
groups, residual, scaled by s) before each block's attention and before its MLP, trained on its own and merged
into the following qkv and fc1 weights for evaluation, so the evaluated model has the backbone's shape and
cost. Plus a new head.

On ViT-B/16 with 100 classes, two adapters per block, each 768 x 8 + 8 (down) + 768 x 4 + 768 (group-wise up:
768 outputs, 8 / 2 inputs each) = 9,992: 12 x 2 x 9,992 = 239,808 and the head's 76,900: 316,708 trainable.

Placement: the reference adapts the LayerNorm output fed to the attention (and to the MLP); the attention reads
its input only through qkv, so the adapter sits in front of qkv and fc1, the layers it merges into.
Departures: the reference picks s per VTAB task (its configs: 0.1 to 10); we take its class default s = 1.
Merging happens inside the module whenever it evaluates without autograd (no runner hook is needed); the
merged weights are kept beside the trained ones, which stay as they are, so training can go on after an
evaluation. `merged` gives the deployed model itself: a copy with plain Linear layers in place of the adapted ones.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING

from strategies import register
from strategies._checks import option, validate_bottleneck
from strategies.base import Strategy, freeze
from strategies.recipes import PEFT_PROTOCOL

if TYPE_CHECKING:
    from torch import nn


@dataclasses.dataclass(frozen=True)
class RepAdapterOptions:
    dim: int = option(8, "hidden width (the reference: dim=8)")
    groups: int = option(2, "groups of the up-projection (the reference: groups=2)")
    scale: float = option(
        1.0, "s (the reference's class default; its VTAB configs search 0.1 to 10 per task)"
    )

    def __post_init__(self) -> None:
        validate_bottleneck(self.dim)
        if not isinstance(self.groups, int) or self.groups < 1 or self.dim % self.groups:
            raise ValueError(
                f"groups must be a positive integer dividing dim={self.dim}, e.g. 2; got {self.groups!r}"
            )
        if not isinstance(self.scale, int | float) or not math.isfinite(self.scale) or self.scale <= 0:
            raise ValueError(f"scale must be a positive number, e.g. 1.0; got {self.scale!r}")


def _linear(block: nn.Module, path: str, strategy: str) -> nn.Linear:
    from torch import nn

    try:
        layer = block.get_submodule(path)
    except AttributeError:
        layer = None
    if not isinstance(layer, nn.Linear):
        raise ValueError(
            f"strategy '{strategy}' needs ViT blocks whose {path} is a Linear layer (timm's Block)"
        )
    return layer


@register
class RepAdapter(Strategy):
    name = "repadapter"
    family = "reparameterised"
    description = (
        "RepAdapter: a linear adapter (8 wide, group-wise up) before each block's attention and MLP, "
        "merged into qkv and fc1 for evaluation; new head"
    )
    Options = RepAdapterOptions
    defaults = PEFT_PROTOCOL
    source = "Luo et al. 2023 (RepAdapter; luogen1996/RepAdapter: dim 8, groups 2, AdamW lr 1e-3, wd 1e-4)"

    def prepare(self, model: nn.Module) -> nn.Module:
        from strategies._repadapter import RepAdapted
        from strategies.vit import require_vit_blocks

        vit = require_vit_blocks(model, self.name, ("attn", "mlp"))
        if vit.embed_dim % self.options.groups:
            raise ValueError(
                f"repadapter.groups={self.options.groups} must divide the model's width {vit.embed_dim}"
            )
        freeze(vit)
        for block in vit.blocks:
            for path in ("attn.qkv", "mlp.fc1"):
                layer = _linear(block, path, self.name)
                adapted = RepAdapted(layer, self.options.dim, self.options.groups, self.options.scale)
                block.set_submodule(path, adapted)
        return vit

    def merged(self, model: nn.Module) -> nn.Module:
        from strategies._repadapter import merged

        return merged(model)
