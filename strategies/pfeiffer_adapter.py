"""Pfeiffer adapters (Pfeiffer et al. 2021), as the "Adapter" row of the VTAB-1k tables (VPT, Jia et al. 2022;
NOAH, Zhang et al. 2022): one residual bottleneck after each block's MLP, before the block's residual
connection, bottleneck 8, GELU. On ViT-B/16 that is 12 x (768 x 8 + 8 + 8 x 768 + 768) = 156,768 numbers
(the tables' 0.16M) besides the head.

Departure, in numbers: VPT's code starts both projections at zero, which leaves every weight without a
gradient for good (the bottleneck's output is 0 whatever the down-projection, and the down-projection's
gradient goes through the zero up-projection): only the 768 up-projection biases per block would train.
Here the down-projection keeps nn.Linear's Kaiming-uniform start (the shared `Bottleneck`), the
up-projection starts at zero, so the model still starts at the backbone's function and all 13,064 numbers
per block train. The layer norms stay frozen.
"""

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
class PfeifferAdapterOptions:
    dim: int = option(8, 'bottleneck width: the VTAB-1k tables\' "Adapter" (NOAH: 8; 0.16M on ViT-B/16)')

    def __post_init__(self) -> None:
        validate_bottleneck(self.dim)


@register
class PfeifferAdapter(Strategy):
    name = "pfeiffer_adapter"
    family = "additive"
    description = "Pfeiffer adapters: one per block (bottleneck 8, GELU, residual) after the MLP; new head"
    Options = PfeifferAdapterOptions
    defaults = PEFT_PROTOCOL
    source = (
        "Pfeiffer et al. 2021, placed as VPT's and NOAH's VTAB-1k \"Adapter\" (after the MLP, bottleneck 8); "
        f"{PEFT_PROTOCOL_SOURCE}"
    )

    def prepare(self, model: nn.Module) -> nn.Module:
        from torch import nn

        from strategies._bottleneck import Bottleneck, SequentialAdapter
        from strategies.vit import require_vit_blocks

        vit = require_vit_blocks(model, self.name, ("mlp",))
        freeze(vit)
        for block in vit.blocks:
            like = next(block.parameters())
            adapter = Bottleneck(vit.embed_dim, self.options.dim, nn.GELU, like.device, like.dtype)
            block.mlp = SequentialAdapter(block.mlp, adapter)
        return vit
