"""FacT-TK (Jie & Deng 2023, "FacT: Factor-Tuning for Lightweight Adaptation on Vision Transformer", AAAI;
reference code github.com/JieShibo/PETL-ViT, FacT/fact_tk.py): the updates of every block's qkv, proj, fc1
and fc2 as one Tucker-factorised tensor: two projections (width <-> rank), a core (rank^3) and a factor
(rank x 12 per block), all shared, scaled by s. Plus a new head. The modules are in `_fact`.

On ViT-B/16 with 100 classes at rank 32: u and v 2 x 768 x 32 = 49,152; core 32^3 = 32,768; factor
32 x 12 x 12 = 4,608; 86,528 in all, and the head's 76,900: 163,428 trainable.

Defaults: rank 32 and s = 0.1 (the reference's CIFAR-100 config, configs/tk/cifar.yaml; its VTAB configs pick
rank and s per task). The reference's dropout 0.1 on the rank-sized features is kept; no departure in numbers.
"""

from __future__ import annotations

import dataclasses

from strategies import register
from strategies._checks import option
from strategies._fact_recipe import FACT_SOURCE, FacTOptions, FacTStrategy


@dataclasses.dataclass(frozen=True)
class FacTTKOptions(FacTOptions):
    rank: int = option(32, "rank of the Tucker factors and core (configs/tk/cifar.yaml: 32)")
    scale: float = option(0.1, "the update is multiplied by this, FacT's s (configs/tk/cifar.yaml: 0.1)")


@register
class FacTTK(FacTStrategy):
    name = "fact_tk"
    description = (
        "FacT-TK: Tucker-factorised updates of qkv, proj, fc1, fc2 (width <-> rank 32, core and factor "
        "shared by all blocks); new head"
    )
    Options = FacTTKOptions
    source = FACT_SOURCE.format(detail="rank 32, s 0.1 from its CIFAR-100 config")
    tucker = True
