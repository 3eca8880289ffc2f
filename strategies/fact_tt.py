"""FacT-TT (Jie & Deng 2023, "FacT: Factor-Tuning for Lightweight Adaptation on Vision Transformer", AAAI;
reference code github.com/JieShibo/PETL-ViT, FacT/fact_tt.py): the updates of every block's qkv, proj, fc1
and fc2 as one tensor-train: two projections shared by all blocks (width <-> rank) and small per-layer
matrices between them, scaled by s. Plus a new head. The modules are in `_fact`.

On ViT-B/16 with 100 classes at rank 8: shared u and v 2 x 768 x 8 = 12,288; per block q, k, v, proj
4 x 8 x 8 = 256, fc1 8 x 32 = 256, fc2 32 x 8 = 256; 12,288 + 12 x 768 = 21,504, and the head's 76,900:
98,404 trainable.

Defaults: rank 8 and s = 1 (the reference's CIFAR-100 config, configs/tt/cifar.yaml; its VTAB configs pick
rank and s per task). The reference's dropout 0.1 on the rank-sized features is kept; no departure in numbers.
"""

from __future__ import annotations

import dataclasses

from strategies import register
from strategies._checks import option
from strategies._fact_recipe import FACT_SOURCE, FacTOptions, FacTStrategy


@dataclasses.dataclass(frozen=True)
class FacTTTOptions(FacTOptions):
    rank: int = option(8, "rank of the tensor-train factors (configs/tt/cifar.yaml: 8)")
    scale: float = option(1.0, "the update is multiplied by this, FacT's s (configs/tt/cifar.yaml: 1.0)")


@register
class FacTTT(FacTStrategy):
    name = "fact_tt"
    description = (
        "FacT-TT: tensor-train factorised updates of qkv, proj, fc1, fc2 (width <-> rank 8 shared by all "
        "blocks, small per-layer cores); new head"
    )
    Options = FacTTTOptions
    source = FACT_SOURCE.format(detail="rank 8, s 1 from its CIFAR-100 config")
    tucker = False
