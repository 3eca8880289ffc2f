"""C3A (Chen et al. 2024): each adapted weight's update is a block-circulant matrix, blocks of b x b each
given by one trainable kernel of b numbers (a circular convolution computed with FFTs), via peft; new head
trainable.

A layer of widths (in, out) trains (out / b) x (in / b) x b numbers: ViT-B/16's qkv at b = 256 trains
9 x 3 x 256 = 6,912, 82,944 besides the head. Where b does not divide both widths (the tests' 32 -> 96 qkv)
a layer uses the largest common divisor of b and its widths (32 there).

Departure: peft's default initialisation (xavier_uniform) draws the kernels at random, so the model would
not compute the backbone's function at the start; this module uses peft's other initialisation, zero
kernels (`init_weights=True`). The update is linear in the kernels, so they receive gradients from the
first step.

Learning rate: peft's C3A page asks for "a much larger learning rate than for other methods, e.g. 1e-1"
and a much smaller weight decay. The kernels therefore train at `kernel_lr_ratio` times the run's lr (100:
peft's 1e-1 over the 1e-3 that the other methods here use) and without weight decay; the head trains at
the run's lr.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING

from strategies import register
from strategies._checks import check_at_least_one, check_positive, check_targets, option
from strategies.base import PeftStrategy
from strategies.recipes import PEFT_PROTOCOL, PEFT_PROTOCOL_SOURCE

if TYPE_CHECKING:
    from torch import nn


@dataclasses.dataclass(frozen=True)
class C3aOptions:
    block_size: int = option(256, "side b of each circulant block; should divide the adapted layers' widths")
    targets: tuple[str, ...] = option(("qkv",), "module names to adapt; timm fuses q, k and v into `qkv`")
    kernel_lr_ratio: float = option(100.0, "the kernels' lr over the run's (peft's docs: 1e-1 against 1e-3)")

    def __post_init__(self) -> None:
        check_at_least_one("block_size", self.block_size)
        check_positive("kernel_lr_ratio", self.kernel_lr_ratio)
        check_targets("targets", self.targets)


@register
class C3a(PeftStrategy):
    name = "c3a"
    family = "reparameterised"
    description = "peft C3A: block-circulant update of qkv (256-wide blocks, one kernel each), new head"
    Options = C3aOptions
    defaults = PEFT_PROTOCOL
    source = (
        "block size 256 (peft's C3AConfig default, after Chen et al. 2024), zero kernels (peft's "
        f"init_weights=True); {PEFT_PROTOCOL_SOURCE}"
    )

    def prepare(self, model: nn.Module) -> nn.Module:
        from peft import C3AConfig

        from strategies._peft import inject, targeted_linears

        block = self.options.block_size
        fitted = {
            name: math.gcd(block, module.in_features, module.out_features)
            for name, module in targeted_linears(model, self.options.targets)
        }
        config = C3AConfig(
            block_size=block,
            block_size_pattern={name: b for name, b in fitted.items() if b != block},
            init_weights=True,  # zero kernels: starts at the backbone (see the module docstring)
            target_modules=list(self.options.targets),
        )
        return inject(self.name, config, model, self.options.targets)

    def lr_ratio(self, name: str, param: nn.Parameter) -> float:
        return self.options.kernel_lr_ratio if ".c3a_kernel." in name else 1.0

    def no_weight_decay(self, name: str, param: nn.Parameter) -> bool:
        return ".c3a_kernel." in name  # peft's docs: a much smaller weight decay than other methods
