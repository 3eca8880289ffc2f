"""MiSS (Kang & Yin 2025; formerly Bone): each adapted weight's update is one trainable r x out shard shared
by all r-wide slices of its input, via peft; new head trainable.

In peft's default ("balance") form, a layer with `out` outputs trains r x out numbers, added to the output
as the sum of the input's r-wide chunks times the shard; the shard starts at zero, so the model starts at
the backbone's function. ViT-B/16 trains 64 x 2,304 = 147,456 numbers per qkv layer. r is capped at the
adapted layers' input width where it exceeds it (32 on the tests' tiny ViT), as peft requires.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from strategies import register
from strategies._checks import check_at_least_one, check_dropout, check_targets
from strategies._protocol import PEFT_PROTOCOL, PEFT_PROTOCOL_SOURCE
from strategies.base import PeftStrategy

if TYPE_CHECKING:
    from torch import nn


@dataclasses.dataclass(frozen=True)
class MissOptions:
    r: int = 64  # width of the shard along the input (at most the adapted layers' input width)
    dropout: float = 0.0  # dropout on the adapter's input
    targets: tuple[str, ...] = ("qkv",)  # module names to adapt; timm fuses q, k and v into `qkv`

    def __post_init__(self) -> None:
        check_at_least_one("miss.r", self.r)
        check_dropout("miss.dropout", self.dropout)
        check_targets("miss.targets", self.targets)


@register
class Miss(PeftStrategy):
    name = "miss"
    family = "reparameterised"
    description = "peft MiSS: one trainable 64 x out shard per qkv layer, shared across its input, new head"
    Options = MissOptions
    defaults = PEFT_PROTOCOL
    source = f"r=64, balance form (peft's MissConfig defaults, after Kang & Yin 2025); {PEFT_PROTOCOL_SOURCE}"

    def prepare(self, model: nn.Module) -> nn.Module:
        from peft import MissConfig

        from strategies._peft import inject, target_widths

        r = min([self.options.r] + [m for m, _ in target_widths(model, self.options.targets)])
        config = MissConfig(r=r, miss_dropout=self.options.dropout, target_modules=list(self.options.targets))
        return inject(self.name, config, model, self.options.targets)
