"""Attention-only selective tuning (the "ATTN" baseline of Mai et al. 2025, "Lessons and Insights from a
Unifying Study of Parameter-Efficient Fine-Tuning (PEFT) in Visual Recognition", CVPR): every weight and bias
of each block's attention (qkv and proj) trains, plus a new head.

On ViT-B/16 with 100 classes: 12 x (768 x 2304 + 2304 + 768 x 768 + 768) = 28,348,416 backbone numbers and
the head's 76,900: 28,425,316 trainable.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from strategies import register
from strategies.base import Strategy
from strategies.recipes import (
    PEFT_PROTOCOL,
    PEFT_PROTOCOL_SOURCE,
    PETL_STUDY_LR,
    PETL_STUDY_LR_SOURCE,
    adamw_grid_with,
)

if TYPE_CHECKING:
    from torch import nn


@register
class AttnOnly(Strategy):
    name = "attn_only"
    family = "selective"
    description = "every attention weight and bias (qkv, proj) of every block and the new head train"
    defaults = PEFT_PROTOCOL
    source = (
        f"Mai et al. 2025 (CVPR, unifying PEFT study: ATTN selective baseline); {PEFT_PROTOCOL_SOURCE}; "
        f"{PETL_STUDY_LR_SOURCE}"
    )

    @classmethod
    def search_space(cls) -> dict[str, tuple]:
        return {"lr": adamw_grid_with(PETL_STUDY_LR)}  # the study's VTAB-1k grid reaches 1e-2 (_protocol.py)

    def prepare(self, model: nn.Module) -> nn.Module:
        from strategies._selective import train_block_part

        return train_block_part(model, "attn", self.name)
