"""Linear probe (feature extraction): a new head on the frozen backbone's pooled features."""

from __future__ import annotations

from torch import nn

from strategies import register
from strategies.base import Split, Strategy, freeze, unfreeze
from strategies.vit import require_vit, split_features


@register
class Linear(Strategy):
    name = "linear"
    family = "probe"
    description = "frozen backbone; train only a new head on the pooled features"
    # No augmentation, so the runner computes each image's features once and trains the head on them.
    defaults = {
        "optimizer": "momentum",
        "lr": 0.01,
        "weight_decay": 0.0,
        "epochs": 10,
        "batch_size": 128,
        "warmup_epochs": 1.0,
        "augment": False,
    }
    source = (
        "SGD with momentum 0.9, no weight decay, cosine schedule: the ViT paper's fine-tuning "
        "protocol (Dosovitskiy et al. 2021, App. B.1.1) applied to the head alone"
    )

    def prepare(self, model: nn.Module) -> nn.Module:
        freeze(model)
        unfreeze(model.get_classifier())
        return model

    def split(self, model: nn.Module) -> Split:
        return split_features(require_vit(model, self.name))
