"""AdaptFormer (Chen et al. 2022): a scaled bottleneck beside each block's MLP."""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING

from strategies import register
from strategies._checks import option, validate_bottleneck
from strategies.base import Strategy, freeze
from strategies.recipes import PEFT_PROTOCOL, PEFT_PROTOCOL_SOURCE

if TYPE_CHECKING:
    from torch import nn


@dataclasses.dataclass(frozen=True)
class AdaptFormerOptions:
    dim: int = option(64, "bottleneck width (Chen et al. 2022, implementation details: 64)")
    scale: float = option(
        0.1, "fixed factor s on the adapter's output (Chen et al. 2022, implementation details: s = 0.1)"
    )

    def __post_init__(self) -> None:
        validate_bottleneck(self.dim)
        if not math.isfinite(self.scale) or self.scale <= 0:
            raise ValueError(f"scale must be a positive number, e.g. 0.1; got {self.scale!r}")


@register
class AdaptFormer(Strategy):
    name = "adaptformer"
    family = "additive"
    description = "AdaptFormer: a bottleneck (ReLU) beside each block's MLP, output scaled by 0.1; new head"
    Options = AdaptFormerOptions
    defaults = PEFT_PROTOCOL
    source = f"Chen et al. 2022 (AdaptFormer: dim 64, s=0.1); {PEFT_PROTOCOL_SOURCE}"

    def prepare(self, model: nn.Module) -> nn.Module:
        """Departures from the official code: no dropout inside the adapter (the code uses 0.1), and the
        adapter reads the LayerNorm output as in the paper's equation rather than the raw residual."""
        from torch import nn

        from strategies._bottleneck import Bottleneck, ParallelAdapter
        from strategies.vit import require_vit_blocks

        vit = require_vit_blocks(model, self.name, ("mlp",))
        freeze(vit)
        for block in vit.blocks:
            like = next(block.parameters())
            adapter = Bottleneck(vit.embed_dim, self.options.dim, nn.ReLU, like.device, like.dtype)
            block.mlp = ParallelAdapter(block.mlp, adapter, self.options.scale)
        return vit
