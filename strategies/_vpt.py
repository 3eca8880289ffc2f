"""Visual prompt tuning's training recipe, options and strategy base class, shared by `vpt_shallow` and
`vpt_deep`. The prompt tokens themselves, and how they enter a ViT, are in `_prompts`."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, ClassVar

from strategies._checks import option
from strategies.base import Strategy

if TYPE_CHECKING:
    from torch import nn

# Training defaults: the VPT code's prompt recipe (KMnP/vpt configs/base-prompt.yaml and
# tune_vtab.py; the paper's implementation-details appendix): SGD momentum 0.9, cosine schedule
# with linear warm-up, weight decay 1e-4, no gradient clipping, learning rate = base_lr * batch / 256,
# base_lr searched in
# {0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50}. We take base_lr 1.0 (the value of the reference
# code's own VTAB example runs for dmlab and eurosat, demo.ipynb) at batch 128, i.e. lr 0.5.
# Departures: 10 epochs with 1 warm-up epoch instead of 100 with 10 (the same 10% warm-up share;
# CIFAR has 50x the images of a VTAB-1k task, and every strategy here gets the same epoch budget);
# crop + flip augmentation as for `full` and `lora` here (VPT's VTAB pipeline only resizes,
# src/data/datasets/tf_dataset.py).
VPT_BASE_LR_BATCH = 256  # VPT scales its base learning rate by batch / 256
VPT_DEFAULTS: dict[str, Any] = {
    "optimizer": "momentum",
    "lr": 1.0 * 128 / VPT_BASE_LR_BATCH,
    "weight_decay": 1e-4,
    "epochs": 10,
    "batch_size": 128,
    "warmup_epochs": 1.0,
    "clip_grad_norm": 0.0,
    "augment": True,
}
# `--search default`: four points of VPT's base-lr grid {0.25, 1, 5, 25}, scaled to batch 128.
# SGD on prompts needs far larger rates than the ViT paper's fine-tuning grid (0.001 to 0.03).
VPT_LR_GRID = tuple(base * 128 / VPT_BASE_LR_BATCH for base in (0.25, 1.0, 5.0, 25.0))
VPT_SOURCE = (
    "VPT (Jia et al. 2022) prompt recipe from its code (KMnP/vpt base-prompt.yaml, tune_vtab.py): "
    "SGD momentum 0.9, cosine, weight decay 1e-4, no clipping, lr = base 1.0 x batch/256 "
    "(searched 0.05-50); 10 epochs, 1 warm-up, crop + flip as for the other strategies here"
)


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
