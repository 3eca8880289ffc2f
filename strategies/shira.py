"""SHiRA (Bhardwaj et al. 2024): sparse high-rank adapters, a fixed random set of each adapted weight's
entries trained directly, via peft; new head trainable.

A layer of m x n weights trains r (m + n) of them, LoRA's count at rank r, at positions drawn once from a
seeded generator (peft's random mask; the seed fixes them so that a resumed run finds the same ones). The
trained entries start at zero, so the model starts at the backbone's function. ViT-B/16 trains
32 x (2,304 + 768) = 98,304 entries per qkv layer.

A layer with fewer than r (m + n) weights (the tests' 96 x 32 qkv: 3,072 < 32 x 128) trains
floor(m n / (m + n)) x (m + n) of them instead (rank 24 there, all 3,072), rather than refusing the option.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from strategies import register
from strategies._checks import check_at_least_one, check_targets, option
from strategies.base import PeftStrategy
from strategies.recipes import PEFT_PROTOCOL, PEFT_PROTOCOL_SOURCE

if TYPE_CHECKING:
    import torch
    from torch import nn


@dataclasses.dataclass(frozen=True)
class ShiraOptions:
    r: int = option(32, "a layer of m x n weights trains r (m + n) of them, as LoRA of rank r")
    seed: int = option(0, "seed of the random mask (peft's random_seed)")
    targets: tuple[str, ...] = option(("qkv",), "module names to adapt; timm fuses q, k and v into `qkv`")

    def __post_init__(self) -> None:
        check_at_least_one("r", self.r)
        check_targets("targets", self.targets)


def _random_mask(
    base_layer: nn.Module, r: int, random_seed: int | None = None, **kwargs: object
) -> torch.Tensor:
    """peft's random mask; on a meta-device skeleton (plan time), whose masked positions peft could not find
    (torch.nonzero has no meta implementation), the first r (m + n) positions on the CPU: the same count."""
    from peft.tuners.shira.mask_functions import random_mask

    if not base_layer.weight.is_meta:
        return random_mask(base_layer, r, random_seed)
    import torch

    out_features, in_features = base_layer.weight.shape
    mask = torch.zeros(out_features * in_features, dtype=torch.bool)
    mask[: r * (out_features + in_features)] = True
    return mask.view(out_features, in_features)


@register
class Shira(PeftStrategy):
    name = "shira"
    family = "reparameterised"
    description = "peft SHiRA: a random sparse set of qkv's weights (LoRA r=32's count) trained, new head"
    Options = ShiraOptions
    defaults = PEFT_PROTOCOL
    source = (
        f"r=32, random mask (peft's ShiraConfig defaults, after Bhardwaj et al. 2024); {PEFT_PROTOCOL_SOURCE}"
    )

    def prepare(self, model: nn.Module) -> nn.Module:
        from peft import ShiraConfig

        from strategies._peft import inject, target_widths

        widths = target_widths(model, self.options.targets)
        # Capped where r (m + n) exceeds the layer's m x n weights (see the module docstring).
        r = min([self.options.r] + [m * n // (m + n) for m, n in widths])
        config = ShiraConfig(r=r, random_seed=self.options.seed, target_modules=list(self.options.targets))
        config.mask_fn = _random_mask  # peft's way to give a mask function
        return inject(self.name, config, model, self.options.targets)
