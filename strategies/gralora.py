"""GraLoRA (Jung et al. 2025): granular LoRA, the weight split into k x k sub-blocks each with its own
low-rank update of rank r / k, via peft; new head trainable.

The count equals LoRA's at the same rank, r x (in + out), while the update's rank can reach k x r. B
starts at zero, so the model starts at the backbone's function. ViT-B/16 trains 32 x (768 + 2,304) =
98,304 numbers per qkv layer.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from strategies import register
from strategies._checks import check_at_least_one, check_dropout, check_positive, check_targets, option
from strategies.base import PeftStrategy
from strategies.recipes import PEFT_PROTOCOL, PEFT_PROTOCOL_SOURCE

if TYPE_CHECKING:
    from torch import nn


@dataclasses.dataclass(frozen=True)
class GraloraOptions:
    r: int = option(32, "total rank, shared by the k sub-blocks of each row of blocks")
    alpha: float = option(64.0, "the update is scaled by alpha / r")
    k: int = option(2, "sub-blocks per side; must divide r and the adapted layers' widths")
    dropout: float = option(0.0, "dropout on the adapter's input")
    targets: tuple[str, ...] = option(("qkv",), "module names to adapt; timm fuses q, k and v into `qkv`")

    def __post_init__(self) -> None:
        check_at_least_one("r", self.r)
        check_positive("alpha", self.alpha)
        check_at_least_one("k", self.k)
        if self.r % self.k:
            raise ValueError(f"k must divide r {self.r}; got {self.k}")
        check_dropout("dropout", self.dropout)
        check_targets("targets", self.targets)


@register
class Gralora(PeftStrategy):
    name = "gralora"
    family = "reparameterised"
    description = "peft GraLoRA on qkv: rank 32 shared by 2 x 2 sub-blocks of the weight, new head trainable"
    Options = GraloraOptions
    defaults = PEFT_PROTOCOL
    source = (
        f"r=32, alpha=64, k=2 (peft's GraloraConfig defaults, after Jung et al. 2025); {PEFT_PROTOCOL_SOURCE}"
    )

    def prepare(self, model: nn.Module) -> nn.Module:
        from peft import GraloraConfig

        from strategies._peft import inject

        config = GraloraConfig(
            r=self.options.r,
            alpha=self.options.alpha,
            gralora_k=self.options.k,
            gralora_dropout=self.options.dropout,
            target_modules=list(self.options.targets),
        )
        return inject(self.name, config, model, self.options.targets)
