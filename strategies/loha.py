"""LoHa (Hyeon-Woo et al. 2022, FedPara; LyCORIS, Yeh et al. 2024): the update is the Hadamard product of two
rank-r products, (W1a W1b) * (W2a W2b) scaled by alpha / r, via peft; new head trainable.

peft zeroes W2b (FedPara's He initialisation for the rest), so the model starts at the backbone's function.
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
class LohaOptions:
    r: int = option(8, "rank of each of the two factors")
    alpha: float = option(16.0, "the update is scaled by alpha / r")
    targets: tuple[str, ...] = option(("qkv",), "module names to adapt; timm fuses q, k and v into `qkv`")

    def __post_init__(self) -> None:
        check_at_least_one("r", self.r)
        check_positive("alpha", self.alpha)
        check_targets("targets", self.targets)


@register
class Loha(PeftStrategy):
    name = "loha"
    family = "reparameterised"
    description = "peft LoHa (Hadamard product of two low-rank updates) on qkv, new head trainable"
    Options = LohaOptions
    defaults = PEFT_PROTOCOL
    source = f"r=8, alpha=16 as LoRA (Hu et al. 2021), for a like-for-like rank; {PEFT_PROTOCOL_SOURCE}"

    def prepare(self, model: nn.Module) -> nn.Module:
        from peft import LoHaConfig

        from strategies._peft import inject

        config = LoHaConfig(
            r=self.options.r, alpha=self.options.alpha, target_modules=list(self.options.targets)
        )
        return inject(self.name, config, model, self.options.targets)
