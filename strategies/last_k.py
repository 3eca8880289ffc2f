"""Last-k blocks: the last k transformer blocks, the final norm and the head train; the rest is frozen."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from strategies import register
from strategies._checks import option
from strategies.base import Split, Strategy, freeze, unfreeze
from strategies.recipes import PAPER_FINETUNE, PAPER_SOURCE

if TYPE_CHECKING:
    from torch import nn


@dataclasses.dataclass(frozen=True)
class LastKOptions:
    k: int = option(2, "how many of the last transformer blocks train")

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"k must be at least 1; got {self.k}")


@register
class LastK(Strategy):
    name = "last_k"
    family = "selective"
    description = "the last k blocks, the final norm and the head train; embeddings and earlier blocks frozen"
    Options = LastKOptions
    defaults = PAPER_FINETUNE
    source = PAPER_SOURCE

    def _check_depth(self, model: nn.Module) -> int:
        from strategies.vit import require_vit

        depth = len(require_vit(model, self.name).blocks)
        if self.options.k > depth:
            raise ValueError(
                f"{self.name}.k must be between 1 and the model's depth {depth}; got {self.options.k}"
            )
        return depth

    def prepare(self, model: nn.Module) -> nn.Module:
        depth = self._check_depth(model)
        freeze(model)
        for module in (
            *model.blocks[depth - self.options.k :],
            model.norm,
            model.fc_norm,
        ):
            unfreeze(module)
        return model

    def split(self, model: nn.Module) -> Split:
        from strategies.vit import split_blocks

        return split_blocks(model, self._check_depth(model) - self.options.k)
