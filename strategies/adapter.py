"""Houlsby adapters (Houlsby et al. 2019): a residual bottleneck after each block's attention and after its
MLP, two per block. At bottleneck 64 on ViT-B/16 that is 2 x 12 x 99,136 = 2,379,264 numbers (2.38M)
besides the head. The "Adapter" row of the VTAB-1k tables (VPT, NOAH: 0.16M) is another design, one
bottleneck of 8 after each MLP: `pfeiffer_adapter`."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from strategies import register
from strategies._checks import option, validate_bottleneck
from strategies.base import Strategy, freeze
from strategies.recipes import PEFT_PROTOCOL, PEFT_PROTOCOL_SOURCE

if TYPE_CHECKING:
    from torch import nn


@dataclasses.dataclass(frozen=True)
class AdapterOptions:
    dim: int = option(
        64, "bottleneck width; one of the sizes the paper sweeps, {8, 64, 256} (Houlsby et al. 2019, GLUE)"
    )

    def __post_init__(self) -> None:
        validate_bottleneck(self.dim)


@register
class Adapter(Strategy):
    name = "adapter"
    family = "additive"
    description = (
        "Houlsby adapters: two per block (bottleneck 64, GELU, residual), after attention and after the MLP; "
        "new head"
    )
    Options = AdapterOptions
    defaults = PEFT_PROTOCOL
    source = f"Houlsby et al. 2019; {PEFT_PROTOCOL_SOURCE}"

    def prepare(self, model: nn.Module) -> nn.Module:
        """Departures from the paper: the layer norms stay frozen (the paper trains them too: 25 x 2 x 768
        = 38,400 more numbers on ViT-B/16), and the up-projection starts at exactly zero instead of a
        Gaussian of std 1e-2, so the start is the backbone."""
        from torch import nn

        from strategies._bottleneck import Bottleneck, SequentialAdapter
        from strategies.vit import require_vit_blocks

        vit = require_vit_blocks(model, self.name, ("attn", "mlp"))
        freeze(vit)
        for block in vit.blocks:
            like = next(block.parameters())
            for part in ("attn", "mlp"):
                adapter = Bottleneck(vit.embed_dim, self.options.dim, nn.GELU, like.device, like.dtype)
                setattr(block, part, SequentialAdapter(getattr(block, part), adapter))
        return vit
