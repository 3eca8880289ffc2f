"""Full fine-tuning: every parameter of the pretrained backbone trains, with a new head."""

from __future__ import annotations

from typing import TYPE_CHECKING

from strategies import register
from strategies.base import Strategy, unfreeze

if TYPE_CHECKING:
    from torch import nn

# The ViT paper's fine-tuning protocol (Dosovitskiy et al. 2021, App. B.1.1): SGD, momentum 0.9,
# no weight decay, gradient clipping at global norm 1, cosine decay, lr from {0.001, 0.003, 0.01, 0.03}.
# Batch 128 instead of the paper's 512 so that ViT-B/16 at 224 px fits common GPUs.
PAPER_FINETUNE = {
    "optimizer": "momentum",
    "lr": 0.003,
    "weight_decay": 0.0,
    "epochs": 10,
    "batch_size": 128,
    "warmup_epochs": 1.0,
    "clip_grad_norm": 1.0,
    "augment": True,
}
PAPER_SOURCE = "ViT paper fine-tuning protocol (Dosovitskiy et al. 2021, App. B.1.1)"


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
