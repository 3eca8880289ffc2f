"""DeLoRA (Bini et al. 2025): LoRA whose update is normalised and bounded, via peft; new head trainable.

Each adapted layer computes W x + (lambda |W| / r) B Xi A x, where Xi divides each rank-one term by the
norms of its rows of A and columns of B, so the update's Frobenius norm is at most lambda times the base
weight's norm; lambda is one trainable number per layer. B starts at zero, so the model starts at the
backbone's function. ViT-B/16 trains 8 x (768 + 2,304) + 1 = 24,577 numbers per qkv layer.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from strategies import register
from strategies._checks import check_at_least_one, check_dropout, check_positive, check_targets, option
from strategies.base import PeftStrategy
from strategies.recipes import PEFT_PROTOCOL, PEFT_PROTOCOL_SOURCE, adamw_grid_with

if TYPE_CHECKING:
    from torch import nn


@dataclasses.dataclass(frozen=True)
class DeloraOptions:
    r: int = option(8, "rank of the update")
    bound: float = option(
        15.0, "lambda: initial bound on the update's norm, relative to the weight's (trainable)"
    )
    dropout: float = option(0.0, "probability of dropping the whole adapter of a layer in a training step")
    targets: tuple[str, ...] = option(("qkv",), "module names to adapt; timm fuses q, k and v into `qkv`")

    def __post_init__(self) -> None:
        check_at_least_one("r", self.r)
        check_positive("bound", self.bound)
        check_dropout("dropout", self.dropout)
        check_targets("targets", self.targets)


@register
class Delora(PeftStrategy):
    name = "delora"
    family = "reparameterised"
    description = "peft DeLoRA: rank-8 update of qkv with a trainable bound on its norm, new head trainable"
    Options = DeloraOptions
    defaults = PEFT_PROTOCOL
    source = (
        f"r=8, lambda=15 (peft's DeloraConfig defaults, after Bini et al. 2025); {PEFT_PROTOCOL_SOURCE}; "
        "lr grid + 1e-2: DeLoRA's GLUE runs use lr 1e-3 to 1e-2 (ExplainableML/DeLoRA scripts/glue_eval.sh; "
        "peft's DeLoRA page: 10-100x LoRA's lr)"
    )

    @classmethod
    def search_space(cls) -> dict[str, tuple]:
        # DeLoRA's RoBERTa GLUE runs train at AdamW lr 1e-3 (MNLI, SST-2), 3e-3 (QNLI, QQP) and 1e-2 (CoLA, RTE,
        # STS-B) (ExplainableML/DeLoRA scripts/glue_eval.sh; no image classification); peft's DeLoRA page asks
        # for 10-100x LoRA's lr. The default grid plus 1e-2.
        return {"lr": adamw_grid_with(1e-2)}

    def prepare(self, model: nn.Module) -> nn.Module:
        from peft import DeloraConfig

        from strategies._peft import inject

        config = DeloraConfig(
            r=self.options.r,
            delora_lambda=self.options.bound,
            module_dropout=self.options.dropout,
            target_modules=list(self.options.targets),
        )
        return inject(self.name, config, model, self.options.targets)
