"""VeRA (Kopiczko et al. 2024): frozen random low-rank projections shared by all adapted layers, with two
trainable scaling vectors per layer (d: r numbers, b: one per output), via peft; new head trainable.

The shared projections are state of peft's tuner, so the adapter is built through `VeraModel` rather
than `inject_adapter_in_model`; the tuner adapts the timm model in place and each adapted layer holds
the shared projections as non-trainable buffers. b starts at zero, so the model starts at the backbone's
function.

As the reference (Kopiczko et al. 2024, image classification with ViT; peft's VeRA examples), the query and
value projections are adapted apart: timm's fused `qkv` is split into q, k and v first (see
`strategies._qkv`), so ViT-B/16 trains (256 + 768) x 2 x 12 = 24,576 numbers besides the head, where the
fused qkv would give (256 + 2,304) x 12 = 30,720. The scaling vectors are exempt from weight decay, like
every vector (benchmark/train/optimizer_groups.py).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from strategies import register
from strategies._checks import check_at_least_one, check_dropout, check_positive, check_targets, option
from strategies.base import PeftStrategy
from strategies.recipes import PEFT_PROTOCOL, PEFT_PROTOCOL_SOURCE

if TYPE_CHECKING:
    from torch import nn


@dataclasses.dataclass(frozen=True)
class VeraOptions:
    r: int = option(256, "rank of the shared random projections")
    d_initial: float = option(0.1, "initial value of every entry of the d vector")
    dropout: float = option(0.0, "dropout on the adapter's input")
    seed: int = option(0, "seed of the shared random projections (peft's projection_prng_key)")
    targets: tuple[str, ...] = option(
        ("q", "v"),
        "module names to adapt: the query and value projections, split out of timm's fused `qkv`",
    )

    def __post_init__(self) -> None:
        check_at_least_one("r", self.r)
        check_positive("d_initial", self.d_initial)
        check_dropout("dropout", self.dropout)
        check_targets("targets", self.targets)


@register
class Vera(PeftStrategy):
    name = "vera"
    family = "reparameterised"
    description = (
        "peft VeRA: shared frozen random projections, trainable scaling vectors on q and v (qkv split); "
        "new head"
    )
    Options = VeraOptions
    defaults = PEFT_PROTOCOL
    source = f"r=256, d_initial=0.1: peft's VeraConfig defaults (after Kopiczko et al. 2024); {PEFT_PROTOCOL_SOURCE}"

    def prepare(self, model: nn.Module) -> nn.Module:
        from peft import VeraConfig, VeraModel

        from strategies._peft import attach_tuner
        from strategies._qkv import split_qkv

        split_qkv(model, self.options.targets)
        config = VeraConfig(
            r=self.options.r,
            d_initial=self.options.d_initial,
            vera_dropout=self.options.dropout,
            projection_prng_key=self.options.seed,
            save_projection=True,  # checkpoints carry the projections instead of regenerating them
            target_modules=list(self.options.targets),
        )
        return attach_tuner(self.name, VeraModel, config, model, self.options.targets).model
