"""Convpass (Jie & Deng 2022, "Convolutional Bypasses Are Better Vision Transformer Adapters"; reference code
github.com/JieShibo/PETL-ViT, convpass/vtab): a convolutional bypass (1x1 down to 8 channels, 3x3 convolution
on the patch-token grid, 1x1 up) beside each block's attention and beside its MLP, scaled by s. Plus a new head.

On ViT-B/16 with 100 classes, two bypasses per block, each 768 x 8 + 8 (down) + 8 x 8 x 3 x 3 + 8 (conv)
+ 8 x 768 + 768 (up) = 13,648: 12 x 2 x 13,648 = 327,552 (the paper's 0.33M) and the head's 76,900:
404,452 trainable.

Departure, in numbers: the reference picks s per VTAB task from its configs (0.01 to 10) and, per task,
Xavier or identity-centred convolution weights; we take s = 0.01 with Xavier weights (its DTD config). Its
up-projection also starts at zero, so the model starts at the backbone's function; the bypass's dropout (0.1)
is kept. The reference hard-codes a 14 x 14 grid; here the grid is the model's own (`patch_embed.grid_size`).
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
class ConvpassOptions:
    dim: int = option(8, "hidden channels of the bypass (the reference: dim=8)")
    scale: float = option(
        0.01, "s on the bypass's output (the reference's VTAB configs: 0.01 to 10, per task)"
    )

    def __post_init__(self) -> None:
        validate_bottleneck(self.dim)
        if not isinstance(self.scale, int | float) or not math.isfinite(self.scale) or self.scale <= 0:
            raise ValueError(f"scale must be a positive number, e.g. 0.01; got {self.scale!r}")


@register
class Convpass(Strategy):
    name = "convpass"
    family = "additive"
    description = (
        "Convpass: a convolutional bypass (1x1 down to 8, 3x3 conv on the patch grid, 1x1 up; s=0.01) "
        "beside each block's attention and MLP; new head"
    )
    Options = ConvpassOptions
    defaults = PEFT_PROTOCOL
    source = (
        "Jie & Deng 2022 (Convpass; JieShibo/PETL-ViT: dim 8, AdamW lr 1e-3, weight decay 1e-4, "
        "s from its VTAB configs)"
    )

    def prepare(self, model: nn.Module) -> nn.Module:
        from strategies._convpass import Bypassed, ConvBypass
        from strategies.vit import require_vit_blocks

        vit = require_vit_blocks(model, self.name, ("attn", "mlp"))
        grid = tuple(getattr(vit.patch_embed, "grid_size", None) or ())
        if len(grid) != 2 or getattr(vit.patch_embed, "dynamic_img_size", False):
            raise ValueError(f"strategy '{self.name}' needs a ViT with a fixed 2-D patch grid")
        freeze(vit)
        for block in vit.blocks:
            like = next(block.parameters())
            for part in ("attn", "mlp"):
                bypass = ConvBypass(vit.embed_dim, self.options.dim, grid, vit.num_prefix_tokens, like)
                setattr(block, part, Bypassed(getattr(block, part), bypass, self.options.scale))
        return vit
