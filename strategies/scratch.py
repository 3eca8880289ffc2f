"""From scratch: the same architecture from random initialisation, everything trainable (the baseline)."""

from __future__ import annotations

from torch import nn

from strategies import register
from strategies.base import Strategy, unfreeze


@register
class Scratch(Strategy):
    name = "scratch"
    family = "baseline"
    description = "same architecture, random initialisation, everything trains: the no-pretraining baseline"
    uses_pretrained = False
    defaults = {
        "optimizer": "adamw",
        "lr": 5e-4,
        "weight_decay": 0.05,
        "epochs": 50,
        "batch_size": 128,
        "warmup_epochs": 5.0,
        "clip_grad_norm": 1.0,
        "augment": True,
    }
    source = "AdamW, lr 5e-4, weight decay 0.05, 5 warm-up epochs as in DeiT (Touvron et al. 2021)"

    def prepare(self, model: nn.Module) -> nn.Module:
        unfreeze(model)
        return model
