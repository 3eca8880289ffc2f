"""DoRA (Liu et al. 2024): weight-decomposed LoRA, via peft; new head trainable.

Each adapted weight is split into a magnitude (one trainable scalar per output row, initialised to the
pretrained row norms) and a direction updated by LoRA, so the model starts at the backbone's function.
"""

from __future__ import annotations

import dataclasses

from peft import LoraConfig
from torch import nn

from strategies import register
from strategies._peft import (
    check_at_least_one,
    check_dropout,
    check_positive,
    check_targets,
    inject,
)
from strategies._protocol import PEFT_PROTOCOL, PEFT_PROTOCOL_SOURCE
from strategies.base import Strategy


@dataclasses.dataclass(frozen=True)
class DoraOptions:
    r: int = 8  # rank of the direction's LoRA update
    alpha: float = 16.0  # the LoRA update is scaled by alpha / r
    dropout: float = 0.0  # dropout on the adapter's input
    targets: tuple[str, ...] = ("qkv",)  # module names to adapt; timm fuses q, k and v into `qkv`

    def __post_init__(self) -> None:
        check_at_least_one("dora.r", self.r)
        check_positive("dora.alpha", self.alpha)
        check_dropout("dora.dropout", self.dropout)
        check_targets("dora.targets", self.targets)


@register
class Dora(Strategy):
    name = "dora"
    family = "reparameterised"
    description = "peft DoRA (LoRA direction + trainable magnitude per output) on qkv, new head trainable"
    Options = DoraOptions
    defaults = PEFT_PROTOCOL
    source = (
        "r=8, alpha=16 as the lora strategy (Hu et al. 2021), DoRA (Liu et al. 2024) adding only the "
        f"magnitude; {PEFT_PROTOCOL_SOURCE}"
    )

    def prepare(self, model: nn.Module) -> nn.Module:
        config = LoraConfig(
            r=self.options.r,
            lora_alpha=self.options.alpha,
            lora_dropout=self.options.dropout,
            target_modules=list(self.options.targets),
            use_dora=True,
        )
        return inject(self.name, config, model, self.options.targets)
