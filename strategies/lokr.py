"""LoKr (LyCORIS, Yeh et al. 2024; after KronA, Edalati et al. 2022): the update is a Kronecker product W1
(x) W2 scaled by alpha / r, via peft; new head trainable.

peft factors each dimension into the pair of divisors nearest its square root (ViT-B qkv: out 2304 = 48 x
48, in 768 = 24 x 32), keeps W1 (48 x 24) full and, when r is below half of W2's larger side, factors W2
(48 x 32) as a rank-r product. peft zeroes W1, so the model starts at the backbone's function.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from strategies import register
from strategies._checks import check_at_least_one, check_positive, check_targets, option
from strategies.base import PeftStrategy
from strategies.recipes import PEFT_PROTOCOL, PEFT_PROTOCOL_SOURCE

if TYPE_CHECKING:
    from torch import nn


@dataclasses.dataclass(frozen=True)
class LokrOptions:
    r: int = option(8, "rank of the second Kronecker factor when it is factored")
    alpha: float = option(16.0, "the update is scaled by alpha / r")
    targets: tuple[str, ...] = option(("qkv",), "module names to adapt; timm fuses q, k and v into `qkv`")

    def __post_init__(self) -> None:
        check_at_least_one("r", self.r)
        check_positive("alpha", self.alpha)
        check_targets("targets", self.targets)


@register
class Lokr(PeftStrategy):
    name = "lokr"
    family = "reparameterised"
    description = "peft LoKr (Kronecker product of a small and a low-rank factor) on qkv, new head trainable"
    Options = LokrOptions
    defaults = PEFT_PROTOCOL
    source = f"r=8, alpha=16 as LoRA (Hu et al. 2021), for a like-for-like rank; {PEFT_PROTOCOL_SOURCE}"

    def prepare(self, model: nn.Module) -> nn.Module:
        from peft import LoKrConfig

        from strategies._peft import inject

        config = LoKrConfig(
            r=self.options.r, alpha=self.options.alpha, target_modules=list(self.options.targets)
        )
        return inject(self.name, config, model, self.options.targets)
