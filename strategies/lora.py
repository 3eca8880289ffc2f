"""LoRA (Hu et al. 2021): low-rank updates to the attention projections, via peft; new head trainable."""

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
class LoraOptions:
    r: int = 8  # rank of the update
    alpha: float = 16.0  # the update is scaled by alpha / r
    dropout: float = 0.0  # dropout on the adapter's input
    targets: tuple[str, ...] = ("qkv",)  # module names to adapt; timm fuses q, k and v into `qkv`

    def __post_init__(self) -> None:
        check_at_least_one("lora.r", self.r)
        check_positive("lora.alpha", self.alpha)
        check_dropout("lora.dropout", self.dropout)
        check_targets("lora.targets", self.targets)


@register
class Lora(Strategy):
    name = "lora"
    family = "reparameterised"
    description = "peft LoRA on the attention projections (fused qkv), frozen backbone, new head trainable"
    Options = LoraOptions
    defaults = PEFT_PROTOCOL
    source = f"r=8, alpha=16 as in Hu et al. 2021; {PEFT_PROTOCOL_SOURCE}"

    def prepare(self, model: nn.Module) -> nn.Module:
        config = LoraConfig(
            r=self.options.r,
            lora_alpha=self.options.alpha,
            lora_dropout=self.options.dropout,
            target_modules=list(self.options.targets),
        )
        return inject(self.name, config, model, self.options.targets)
