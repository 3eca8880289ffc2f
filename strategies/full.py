"""Full fine-tuning: every parameter of the pretrained backbone trains, with a new head."""

from __future__ import annotations

from typing import TYPE_CHECKING

from strategies import register
from strategies.base import Strategy, unfreeze
from strategies.recipes import PAPER_FINETUNE, PAPER_SOURCE

if TYPE_CHECKING:
    from torch import nn


@register
class Full(Strategy):
    name = "full"
    family = "baseline"
    description = "every parameter trains, starting from the pretrained weights"
    defaults = PAPER_FINETUNE
    source = PAPER_SOURCE

    def prepare(self, model: nn.Module) -> nn.Module:
        unfreeze(model)
        return model
