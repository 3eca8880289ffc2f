"""Visual Query Tuning (Tu et al. 2023, "Visual Query Tuning: Towards Effective Usage of Intermediate
Representations for Parameter and Memory Efficient Transfer Learning", CVPR; reference code
github.com/andytu28/VQT): learnable query tokens before every block read that block's tokens (nothing reads
them back, so the backbone's own features are unchanged); the head sees the final class feature and every
block's query outputs, concatenated. The modules are in `_vqt`.

On ViT-B/16 with 100 classes and 1 query per block: queries 12 x 768 = 9,216; the head reads
(12 + 1) x 768 = 9,984 features: 9,984 x 100 + 100 = 998,500; 1,007,716 trainable.

`starts_at_backbone` is False: the head is new and wider, so the prepared model's logits differ from the
backbone's before any training.

Departures: the reference runs VPT's recipe and searches the number of queries per task; we take 1 query per
block (the paper's most parameter-efficient setting) and VPT's recipe as `vpt_*` here. The reference
L2-normalises each part of the head's input (NORMALIZE_FEATS); here that is `normalize`, off by default:
with the new head trained from its start, unit-norm features learned slowly (offline demo, seed 0, AdamW
lr 2e-3, 20 epochs: 89.69% test top-1 normalised, 96.38% not, against the linear probe's 95.54%). The new head's
class-feature columns start as the model's head and its query columns as timm's ViT head (normal, std 0.02).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from strategies import register
from strategies._checks import option
from strategies.base import Strategy, freeze
from strategies.recipes import VPT_DEFAULTS, VPT_LR_GRID, VPT_SOURCE

if TYPE_CHECKING:
    from torch import nn


@dataclasses.dataclass(frozen=True)
class VqtOptions:
    queries: int = option(1, "query tokens per block (Tu et al. 2023: 1 is its leanest setting)")
    dropout: float = option(0.1, "on the query tokens during training (the reference's VTAB script: 0.1)")
    normalize: bool = option(
        False, "L2-normalise each part of the head's input (the reference's default: True)"
    )

    def __post_init__(self) -> None:
        if not isinstance(self.queries, int) or self.queries < 1:
            raise ValueError(f"queries must be a positive integer, e.g. 1; got {self.queries!r}")
        if not isinstance(self.dropout, int | float) or not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1); got {self.dropout!r}")
        if not isinstance(self.normalize, bool):
            raise ValueError(f"normalize must be true or false; got {self.normalize!r}")


@register
class Vqt(Strategy):
    name = "vqt"
    family = "prompt"
    description = (
        "Visual Query Tuning: a learnable query token per block reads its tokens; the new head sees the "
        "class feature and every block's query output"
    )
    Options = VqtOptions
    defaults = VPT_DEFAULTS
    source = f"Tu et al. 2023 (VQT, built on VPT's code; 1 query per block); {VPT_SOURCE}"
    starts_at_backbone = False

    @classmethod
    def search_space(cls) -> dict[str, tuple]:
        return {"lr": VPT_LR_GRID}

    def prepare(self, model: nn.Module) -> nn.Module:
        from torch import nn

        from strategies._vqt import add_queries
        from strategies.vit import require_vit

        vit = require_vit(model, self.name)
        if not isinstance(vit.get_classifier(), nn.Linear) or vit.global_pool != "token":
            raise ValueError(
                f"strategy '{self.name}' needs a ViT with a class token and a Linear head (global_pool 'token')"
            )
        freeze(vit)
        return add_queries(vit, self.options.queries, self.options.dropout, self.options.normalize)
