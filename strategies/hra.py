"""HRA (Yuan et al. 2024): each adapted weight is multiplied on its input side by a chain of r trainable
Householder reflections, W (I - 2 u_1 u_1^T / |u_1|^2) ... (I - 2 u_r u_r^T / |u_r|^2), via peft; new head
trainable.

peft initialises the r vectors in identical pairs, so each pair of reflections cancels and the model
starts at the backbone's function (hence r must be even). ViT-B/16 trains 768 x 8 = 6,144 numbers per qkv
layer, 73,728 besides the head. No Gram-Schmidt orthogonalisation (peft's default, as the paper's main
setting without its orthogonality regulariser).
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
class HraOptions:
    r: int = option(8, "Householder reflections per adapted layer (even: they start in cancelling pairs)")
    apply_gs: bool = option(False, "Gram-Schmidt orthogonalisation of the reflection vectors")
    targets: tuple[str, ...] = option(("qkv",), "module names to adapt; timm fuses q, k and v into `qkv`")

    def __post_init__(self) -> None:
        check_at_least_one("r", self.r)
        if self.r % 2:
            raise ValueError(f"r must be even (reflections start in cancelling pairs); got {self.r}")
        check_targets("targets", self.targets)


@register
class Hra(PeftStrategy):
    name = "hra"
    family = "reparameterised"
    description = "peft HRA: 8 trainable Householder reflections rotate qkv's input, new head trainable"
    Options = HraOptions
    defaults = PEFT_PROTOCOL
    source = (
        f"r=8, no Gram-Schmidt (peft's HRAConfig defaults, after Yuan et al. 2024); {PEFT_PROTOCOL_SOURCE}"
    )

    def prepare(self, model: nn.Module) -> nn.Module:
        from peft import HRAConfig

        from strategies._peft import inject

        config = HRAConfig(
            r=self.options.r, apply_GS=self.options.apply_gs, target_modules=list(self.options.targets)
        )
        return inject(self.name, config, model, self.options.targets)
