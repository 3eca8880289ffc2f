"""(IA)^3 (Liu et al. 2022, T-Few): learned vectors that rescale activations, via peft; new head trainable.

The paper rescales keys, values and the feed-forward's intermediate activations. timm fuses q, k and v
into one `qkv` projection, so here the whole qkv output is rescaled (queries too: 3 x width numbers per
block, a departure from the paper), and `fc2`'s input, the feed-forward's hidden activations (4 x width
numbers per block), as the paper. The vectors start at one, so the model starts at the backbone's function.
peft stores them as (n, 1) and (1, n) matrices; they are scales and, like every vector, exempt from weight
decay (benchmark/train/optimizer_groups.py), which would otherwise pull them from 1 towards 0.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from strategies import register
from strategies._checks import check_targets, option
from strategies.base import PeftStrategy
from strategies.recipes import PEFT_PROTOCOL, PEFT_PROTOCOL_SOURCE

if TYPE_CHECKING:
    from torch import nn


@dataclasses.dataclass(frozen=True)
class Ia3Options:
    targets: tuple[str, ...] = option(
        ("qkv", "fc2"), "modules whose output (or, if feed-forward, input) is rescaled"
    )
    feedforward: tuple[str, ...] = option(
        ("fc2",), "targets rescaled at their input, as the paper's FFN scaling"
    )

    def __post_init__(self) -> None:
        check_targets("targets", self.targets)
        if not set(self.feedforward) <= set(self.targets):
            raise ValueError(
                f"feedforward must be a subset of targets {list(self.targets)}; got {list(self.feedforward)}"
            )


@register
class Ia3(PeftStrategy):
    name = "ia3"
    family = "reparameterised"
    description = (
        "peft (IA)^3: learned rescaling of the qkv outputs and the MLP's hidden units, new head trainable"
    )
    Options = Ia3Options
    defaults = PEFT_PROTOCOL
    source = f"targets as in Liu et al. 2022 (keys, values, FFN), on timm's fused qkv; {PEFT_PROTOCOL_SOURCE}"

    def prepare(self, model: nn.Module) -> nn.Module:
        from peft import IA3Config

        from strategies._peft import inject

        config = IA3Config(
            target_modules=list(self.options.targets), feedforward_modules=list(self.options.feedforward)
        )
        return inject(self.name, config, model, self.options.targets)

    def no_weight_decay(self, name: str, param: nn.Parameter) -> bool:
        return ".ia3_l." in name  # the scaling vectors
