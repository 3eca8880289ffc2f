"""WaveFT (Bilican et al. 2025): each adapted weight's update is the inverse discrete wavelet transform of a
sparse set of `n_frequency` trainable wavelet coefficients at fixed random positions, via peft; new head
trainable.

As FourierFT with a Haar wavelet ('db1') in place of the Fourier basis; the coefficients start at zero
(peft's default), so the model starts at the backbone's function. ViT-B/16 trains 2,592 coefficients per
qkv layer, 31,104 besides the head. The defaults are peft's (n_frequency 2,592 and scaling 25, its SDXL
personalisation setting).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from strategies import register
from strategies._checks import check_at_least_one, check_positive, check_targets, option
from strategies.base import PeftStrategy
from strategies.recipes import PEFT_PROTOCOL, PEFT_PROTOCOL_SOURCE

if TYPE_CHECKING:
    from torch import nn


@dataclasses.dataclass(frozen=True)
class WaveftOptions:
    n_frequency: int = option(2592, "trainable wavelet coefficients per adapted layer (at most its weights)")
    scaling: float = option(25.0, "the update is multiplied by this, as LoRA's alpha / r")
    seed: int = option(777, "seed of the coefficients' random positions (peft's random_loc_seed default)")
    targets: tuple[str, ...] = option(("qkv",), "module names to adapt; timm fuses q, k and v into `qkv`")

    def __post_init__(self) -> None:
        check_at_least_one("n_frequency", self.n_frequency)
        check_positive("scaling", self.scaling)
        check_targets("targets", self.targets)


@register
class Waveft(PeftStrategy):
    name = "waveft"
    family = "reparameterised"
    description = "peft WaveFT: 2592 trainable Haar wavelet coefficients per qkv weight update, new head"
    Options = WaveftOptions
    defaults = PEFT_PROTOCOL
    source = (
        "n_frequency 2592, scaling 25, Haar wavelet (peft's WaveFTConfig defaults, after Bilican et al. "
        f"2025); {PEFT_PROTOCOL_SOURCE}"
    )

    def prepare(self, model: nn.Module) -> nn.Module:
        from peft import WaveFTConfig

        from strategies._peft import inject, target_widths

        for m, n in target_widths(model, self.options.targets):
            if m * n < self.options.n_frequency:
                raise ValueError(
                    f"{self.name}.n_frequency must be at most the adapted layers' weights {m * n}; "
                    f"got {self.options.n_frequency}"
                )
        config = WaveFTConfig(
            n_frequency=self.options.n_frequency,
            scaling=self.options.scaling,
            wavelet_family="db1",  # Haar, peft's default
            random_loc_seed=self.options.seed,
            target_modules=list(self.options.targets),
        )
        return inject(self.name, config, model, self.options.targets)
