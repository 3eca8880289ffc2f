"""Visual prompt tuning's options and strategy base class, shared by `vpt_shallow` and `vpt_deep` (their
training recipe is `recipes.VPT_DEFAULTS`).
The prompt tokens themselves, and how they enter a ViT, are in `_prompts`."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, ClassVar

from strategies._checks import option
from strategies.base import Strategy
from strategies.recipes import VPT_DEFAULTS, VPT_LR_GRID, VPT_SOURCE

if TYPE_CHECKING:
    from torch import nn


@dataclasses.dataclass(frozen=True)
class PromptOptions:
    tokens: int = option(10, "prompt tokens per prompted layer; VPT searches {1, 5, 10, 50, 100, 200}")
    dropout: float = option(
        0.1,
        "dropout on the prompt tokens during training; the reference code's VTAB runs use 0.1 (demo.ipynb)",
    )

    def __post_init__(self) -> None:
        if self.tokens < 1:
            raise ValueError(f"tokens must be at least 1; got {self.tokens}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1); got {self.dropout}")


class PromptTuning(Strategy):
    """Base of `vpt_shallow` and `vpt_deep`: frozen backbone, trainable prompts and head.

    `starts_at_backbone` is False: prompt tokens take part in attention from the first forward pass,
    so the prepared model's function differs from the backbone's before any training.
    """

    family = "prompt"
    Options = PromptOptions
    defaults = VPT_DEFAULTS
    source = VPT_SOURCE
    starts_at_backbone = False
    deep: ClassVar[bool]  # one set of prompts per block, or one before the first block

    @classmethod
    def search_space(cls) -> dict[str, tuple]:
        return {"lr": VPT_LR_GRID}

    def prepare(self, model: nn.Module) -> nn.Module:
        from strategies._prompts import add_prompts
        from strategies.vit import require_vit

        layers = len(require_vit(model, self.name).blocks) if self.deep else 1
        return add_prompts(model, self.name, self.options.tokens, layers, self.options.dropout)
