"""FacT's options and strategy base class, shared by `fact_tt` and `fact_tk` (light: no torch at import; the
modules are in `_fact`)."""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, ClassVar

from strategies._checks import option
from strategies.base import Strategy, freeze
from strategies.recipes import PEFT_PROTOCOL

if TYPE_CHECKING:
    from torch import nn

# The reference trains with AdamW lr 1e-3, weight decay 1e-4 (FacT/fact_tt.py, fact_tk.py defaults): the
# VTAB-1k PEFT protocol.
FACT_SOURCE = "Jie & Deng 2023 (FacT; JieShibo/PETL-ViT FacT: AdamW lr 1e-3, weight decay 1e-4, {detail})"


@dataclasses.dataclass(frozen=True)
class FacTOptions:
    rank: int = option(8, "rank of the factorised update (width <-> rank projections)")
    scale: float = option(1.0, "the update is multiplied by this (FacT's s)")

    def __post_init__(self) -> None:
        if not isinstance(self.rank, int) or self.rank < 1:
            raise ValueError(f"rank must be a positive integer, e.g. 8; got {self.rank!r}")
        if not isinstance(self.scale, int | float) or not math.isfinite(self.scale) or self.scale <= 0:
            raise ValueError(f"scale must be a positive number, e.g. 0.1; got {self.scale!r}")


class FacTStrategy(Strategy):
    """Base of `fact_tt` and `fact_tk`: frozen ViT, FacT updates on qkv, proj, fc1, fc2, new head."""

    family = "reparameterised"
    defaults = PEFT_PROTOCOL
    tucker: ClassVar[bool]

    def prepare(self, model: nn.Module) -> nn.Module:
        from torch import nn

        from strategies._fact import add_fact
        from strategies.vit import require_vit_blocks

        vit = require_vit_blocks(model, self.name, ("attn", "mlp"))
        width = vit.embed_dim
        for block in vit.blocks:
            layers = [getattr(block.attn, "qkv", None), getattr(block.attn, "proj", None)]
            layers += [getattr(block.mlp, "fc1", None), getattr(block.mlp, "fc2", None)]
            if not all(isinstance(layer, nn.Linear) for layer in layers) or layers[2].out_features % width:
                raise ValueError(
                    f"strategy '{self.name}' needs ViT blocks with Linear attn.qkv, attn.proj, mlp.fc1 and "
                    f"mlp.fc2, fc1 a whole multiple of the width wide (timm's Block)"
                )
        freeze(vit)
        add_fact(vit, self.options.rank, self.options.scale, self.tucker)
        return vit
