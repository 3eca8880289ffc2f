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
from strategies._checks import check_at_least_one, check_dropout, check_targets, option
from strategies.base import PeftStrategy
from strategies.recipes import PEFT_PROTOCOL, PEFT_PROTOCOL_SOURCE, adamw_grid_with

if TYPE_CHECKING:
    from torch import nn


@dataclasses.dataclass(frozen=True)
class MissOptions:
    r: int = option(64, "width of the shard along the input (at most the adapted layers' input width)")
    dropout: float = option(0.0, "dropout on the adapter's input")
    targets: tuple[str, ...] = option(("qkv",), "module names to adapt; timm fuses q, k and v into `qkv`")

    def __post_init__(self) -> None:
        check_at_least_one("r", self.r)
        check_dropout("dropout", self.dropout)
        check_targets("targets", self.targets)


@register
class Miss(PeftStrategy):
    name = "miss"
    family = "reparameterised"
    description = "peft MiSS: one trainable 64 x out shard per qkv layer, shared across its input, new head"
    Options = MissOptions
    defaults = PEFT_PROTOCOL
    source = (
        f"r=64, balance form (peft's MissConfig defaults, after Kang & Yin 2025); {PEFT_PROTOCOL_SOURCE}; "
        "lr grid + 2e-5: MiSS's LLaMA-2-7B MetaMathQA setting (peft's examples/miss_finetuning README; no image task)"
    )

    @classmethod
    def search_space(cls) -> dict[str, tuple]:
        # peft's MiSS example fine-tunes LLaMA-2-7B on MetaMathQA at AdamW lr 2e-5
        # (examples/miss_finetuning/README.md; the paper reports no image classification): the default grid plus 2e-5.
        return {"lr": adamw_grid_with(2e-5)}

    def prepare(self, model: nn.Module) -> nn.Module:
        from peft import MissConfig

        from strategies._peft import inject, target_widths

        r = min([self.options.r] + [m for m, _ in target_widths(model, self.options.targets)])
        config = MissConfig(r=r, miss_dropout=self.options.dropout, target_modules=list(self.options.targets))
        return inject(self.name, config, model, self.options.targets)
