"""LN tuning (Qi et al. 2022) through peft's LNTuningConfig: every LayerNorm's affine weight and bias train, on
a trainable copy that peft keeps beside the frozen original, plus the new head.

It trains the same numbers as the `norm` strategy on a ViT (two LayerNorms per block and the final one:
ViT-B/16 trains 2 x 2 x 768 x 12 + 2 x 768 = 38,400 besides the head); it is here to measure peft's
implementation (a copy of each layer, swapped in by peft) against the in-place one. It needs LayerNorms:
a model without them (a ResNet) is refused.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from strategies import register
from strategies.base import PeftStrategy
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
class LnTuning(PeftStrategy):
    name = "ln_tuning"
    family = "selective"
    description = "peft LN tuning: a trainable copy of every LayerNorm (weight and bias), new head trainable"
    defaults = PEFT_PROTOCOL
    source = (
        f"Qi et al. 2022 (LN-tuning), peft's LNTuningConfig; {PEFT_PROTOCOL_SOURCE}; {PETL_STUDY_LR_SOURCE} "
        "for LayerNorm tuning"
    )

    @classmethod
    def search_space(cls) -> dict[str, tuple]:
        # Qi et al. 2022 tune language models (their lr not found); LayerNorm tuning's VTAB-1k runs are
        # Mai et al. 2025's ("ln"), whose grid reaches 1e-2 (_protocol.py).
        return {"lr": adamw_grid_with(PETL_STUDY_LR)}

    def prepare(self, model: nn.Module) -> nn.Module:
        from peft import LNTuningConfig
        from torch import nn

        from strategies._peft import inject

        names = [
            name
            for name, module in model.named_modules()
            if isinstance(module, nn.LayerNorm) and module.elementwise_affine
        ]
        if not names:
            raise ValueError(
                f"strategy '{self.name}' needs a model with LayerNorm layers (a ViT); "
                f"{type(model).__name__} has none"
            )
        # Exact names: peft matches a list of targets by name suffix.
        config = LNTuningConfig(target_modules="|".join(re.escape(name) for name in names))
        return inject(self.name, config, model, names)
