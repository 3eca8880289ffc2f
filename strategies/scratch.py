"""A minimal from-scratch baseline: the same architecture from random initialisation, everything trains.

It borrows DeiT's optimiser settings (Touvron et al. 2021: AdamW, lr 5e-4 at batch 512, weight decay 0.05,
5 warm-up epochs) and leaves out the rest of DeiT's recipe: RandAugment, mixup and cutmix, label smoothing
0.1, drop-path 0.1, repeated augmentation, 300 epochs, and the lr scaling 5e-4 x batch / 512 (the lr is
used as given, as for every strategy). It answers "what does pretraining buy under the same short
budget", not "how well can a ViT be trained from scratch".
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from strategies import register
from strategies.base import Strategy, unfreeze
from strategies.recipes import SCRATCH, SCRATCH_SOURCE

if TYPE_CHECKING:
    from torch import nn


@register
class Scratch(Strategy):
    name = "scratch"
    family = "baseline"
    description = (
        "minimal from-scratch baseline: same architecture, random initialisation, everything trains "
        "(not DeiT's full recipe: no RandAugment, mixup, cutmix, label smoothing or drop-path)"
    )
    uses_pretrained = False
    defaults = SCRATCH
    source = SCRATCH_SOURCE

    def prepare(self, model: nn.Module) -> nn.Module:
        unfreeze(model)
        return model
