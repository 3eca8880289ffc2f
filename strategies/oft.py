"""OFT (Qiu et al. 2023): a learned block-diagonal orthogonal rotation of each adapted layer's input, via
peft; new head trainable.

peft rotates the input features of the layer (768 for ViT-B's qkv, 32 for the tiny test ViT), in blocks
of `block_size`, each an orthogonal matrix from a skew-symmetric one (b(b-1)/2 numbers per block) through
the Cayley transform, approximated by a 5-term Neumann series (peft's default, OFTv2, Qiu et al. 2025).
block_size 32 is peft's default; it divides the input widths (768 = 24 x 32, tiny 32 = 1 x 32) and also
the qkv output widths (2304 = 72 x 32, tiny 96 = 3 x 32), so the same default fits every ViT whose width
is a multiple of 32. The skew-symmetric parts start at zero (identity rotations), so the model starts at
the backbone's function.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from strategies import register
from strategies._checks import check_at_least_one, check_targets, option
from strategies.base import PeftStrategy
from strategies.recipes import PEFT_PROTOCOL, PEFT_PROTOCOL_SOURCE

if TYPE_CHECKING:
    from torch import nn


@dataclasses.dataclass(frozen=True)
class OftOptions:
    block_size: int = option(32, "side of each orthogonal block; must divide the adapted layers' input width")
    targets: tuple[str, ...] = option(("qkv",), "module names to adapt; timm fuses q, k and v into `qkv`")

    def __post_init__(self) -> None:
        check_at_least_one("block_size", self.block_size)
        check_targets("targets", self.targets)


def check_block_size(strategy: str, model: nn.Module, targets: tuple[str, ...], block_size: int) -> None:
    """peft would silently change a block size that does not divide a layer's input width; refuse instead."""
    from strategies._peft import targeted_linears

    for name, module in targeted_linears(model, targets):
        if module.in_features % block_size:
            raise ValueError(
                f"{strategy}.block_size {block_size} must divide the input width "
                f"{module.in_features} of {name}"
            )


@register
class Oft(PeftStrategy):
    name = "oft"
    family = "reparameterised"
    description = (
        "peft OFT: block-diagonal orthogonal rotation (blocks of 32) of qkv's input, new head trainable"
    )
    Options = OftOptions
    defaults = PEFT_PROTOCOL
    source = f"block size 32 (peft's default, OFTv2, Qiu et al. 2025); {PEFT_PROTOCOL_SOURCE}"

    def prepare(self, model: nn.Module) -> nn.Module:
        from peft import OFTConfig

        from strategies._peft import inject

        check_block_size(self.name, model, self.options.targets, self.options.block_size)
        config = OFTConfig(
            r=0, oft_block_size=self.options.block_size, target_modules=list(self.options.targets)
        )
        return inject(self.name, config, model, self.options.targets)
