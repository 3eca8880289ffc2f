"""BOFT (Liu et al. 2024): orthogonal fine-tuning with the rotation of each adapted layer's input built from
butterfly factors of small orthogonal blocks, plus a trainable scale per output, via peft; new head
trainable.

Departure: peft builds more than one butterfly factor only with its CUDA extension, compiled at run time,
and otherwise silently falls back to one factor, which would make the parameter count depend on the
machine. This module therefore uses one factor everywhere (peft's default): a block-diagonal rotation
with blocks of `block_size` (peft stores b x b numbers per block and makes them orthogonal through the
Cayley transform of their skew-symmetric part) and one scale per output. The blocks start at zero
(identity rotation) and the scales at one, so the model starts at the backbone's function.

Stored and effective counts: peft stores each block whole (b x b = 16 numbers at b = 4) but the Cayley
transform uses only its skew-symmetric part, b(b - 1)/2 = 6 free numbers: on ViT-B/16 the adapter stores
(192 x 16 + 2,304) x 12 = 64,512 numbers of which (192 x 6 + 2,304) x 12 = 41,472 reach the output
(`effective_params`). The output scales, stored as (n, 1), are exempt from weight decay like every vector
(benchmark/train/optimizer_groups.py).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from strategies import register
from strategies._checks import check_targets, option
from strategies.base import PeftStrategy
from strategies.recipes import PEFT_PROTOCOL, PEFT_PROTOCOL_SOURCE

if TYPE_CHECKING:
    from torch import nn


@dataclasses.dataclass(frozen=True)
class BoftOptions:
    block_size: int = option(4, "side of each orthogonal block; must divide the adapted layers' input width")
    targets: tuple[str, ...] = option(("qkv",), "module names to adapt; timm fuses q, k and v into `qkv`")

    def __post_init__(self) -> None:
        if self.block_size < 2 or self.block_size % 2:
            raise ValueError(f"block_size must be an even number of at least 2; got {self.block_size}")
        check_targets("targets", self.targets)


def skip_cuda_extension() -> None:
    """Tell peft its BOFT CUDA extension is unavailable unless it already tried to load it.

    With one butterfly factor the extension only speeds up assembling the block-diagonal matrix, but
    peft tries to compile it on first use (about 20 s on a CPU-only machine before failing, minutes on a
    GPU machine); `False` makes peft's `get_fbd_cuda` report it absent at once, so the plain torch path
    is used everywhere and runs are alike on every machine.
    """
    import peft.tuners.boft.layer

    if peft.tuners.boft.layer._FBD_CUDA is None:
        peft.tuners.boft.layer._FBD_CUDA = False


@register
class Boft(PeftStrategy):
    name = "boft"
    family = "reparameterised"
    description = (
        "peft BOFT (one butterfly factor): orthogonal 4x4 blocks rotate qkv's input, output scales, head"
    )
    Options = BoftOptions
    defaults = PEFT_PROTOCOL
    source = f"block size 4 and one butterfly factor (peft's BOFTConfig defaults); {PEFT_PROTOCOL_SOURCE}"

    def prepare(self, model: nn.Module) -> nn.Module:
        from peft import BOFTConfig

        from strategies._peft import inject, targeted_linears

        for name, module in targeted_linears(model, self.options.targets):
            if module.in_features % self.options.block_size:
                raise ValueError(
                    f"{self.name}.block_size {self.options.block_size} must divide the input width "
                    f"{module.in_features} of {name}"
                )
        skip_cuda_extension()
        config = BOFTConfig(
            boft_block_size=self.options.block_size,
            boft_n_butterfly_factor=1,
            target_modules=list(self.options.targets),
        )
        return inject(self.name, config, model, self.options.targets)

    def no_weight_decay(self, name: str, param: nn.Parameter) -> bool:
        return ".boft_s." in name  # the output scales

    def effective_params(self, model: nn.Module) -> int:
        """The trainable count less the part of each b x b block that the Cayley transform ignores: its
        symmetric part, b(b + 1)/2 numbers (the diagonal and one of each mirrored pair)."""
        block = self.options.block_size
        blocks = sum(
            param.numel() // (block * block) for name, param in model.named_parameters() if ".boft_R." in name
        )
        return super().effective_params(model) - blocks * block * (block + 1) // 2
