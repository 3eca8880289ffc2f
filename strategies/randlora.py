"""RandLoRA (Albert et al. 2025): a full-rank update built from frozen random low-rank bases shared by all
adapted layers, each scaled by small trainable diagonal matrices, via peft; new head trainable.

Each layer of widths (in, out) uses n = ceil(min(in, out) / r) random bases of rank r and trains
Lambda (r x n) and Gamma (n x min(in, out)); the bases are state of peft's tuner (as VeRA's projections),
so the adapter is built through `RandLoraModel`, and are kept as non-trainable buffers. Lambda starts at
zero, so the model starts at the backbone's function. ViT-B/16's qkv (768 -> 2,304) has n = 768 / 32 = 24:
32 x 24 + 24 x 768 = 19,200 numbers per layer.
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
class RandloraOptions:
    r: int = option(32, "rank of each random basis (a smaller r means more bases and more trainable numbers)")
    alpha: float = option(640.0, "the update is scaled by alpha / r (the paper: 20 x r)")
    dropout: float = option(0.0, "dropout on the adapter's input")
    seed: int = option(0, "seed of the shared random bases (peft's projection_prng_key)")
    targets: tuple[str, ...] = option(("qkv",), "module names to adapt; timm fuses q, k and v into `qkv`")

    def __post_init__(self) -> None:
        check_at_least_one("r", self.r)
        check_positive("alpha", self.alpha)
        check_dropout("dropout", self.dropout)
        check_targets("targets", self.targets)


@register
class Randlora(PeftStrategy):
    name = "randlora"
    family = "reparameterised"
    description = "peft RandLoRA on qkv: shared frozen random bases, trainable diagonal scales, new head"
    Options = RandloraOptions
    defaults = PEFT_PROTOCOL
    source = (
        f"r=32, alpha=640 (peft's RandLoraConfig defaults, after Albert et al. 2025); {PEFT_PROTOCOL_SOURCE}"
    )

    def prepare(self, model: nn.Module) -> nn.Module:
        from peft import RandLoraConfig, RandLoraModel

        from strategies._peft import attach_tuner

        config = RandLoraConfig(
            r=self.options.r,
            randlora_alpha=self.options.alpha,
            randlora_dropout=self.options.dropout,
            projection_prng_key=self.options.seed,
            save_projection=True,  # checkpoints carry the bases instead of regenerating them
            target_modules=list(self.options.targets),
        )
        return attach_tuner(self.name, RandLoraModel, config, model, self.options.targets).model
