"""FourierFT (Gao et al. 2024): each adapted weight's update is the inverse 2-D Fourier transform of a
sparse spectrum with `n_frequency` trainable coefficients at fixed random frequencies, via peft; new head
trainable.

Departure: peft's default (`init_weights=False`) draws the coefficients from a standard normal, so the
model would not compute the backbone's function at the start. This module uses peft's other
initialisation, zero coefficients (`init_weights=True`): the update is linear in the coefficients, so
they still receive gradients from the first step, and the model starts at the backbone's function like
the other reparameterised methods.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from strategies import register
from strategies._checks import check_at_least_one, check_positive, check_targets
from strategies._protocol import PEFT_PROTOCOL, PEFT_PROTOCOL_SOURCE
from strategies.base import Strategy

if TYPE_CHECKING:
    from torch import nn


@dataclasses.dataclass(frozen=True)
class FourierftOptions:
    n_frequency: int = 3000  # trainable spectral coefficients per adapted layer
    scaling: float = 300.0  # the update is multiplied by this, as LoRA's alpha / r
    seed: int = 777  # seed of the frequencies' random locations (peft's random_loc_seed default)
    targets: tuple[str, ...] = ("qkv",)  # module names to adapt; timm fuses q, k and v into `qkv`

    def __post_init__(self) -> None:
        check_at_least_one("fourierft.n_frequency", self.n_frequency)
        check_positive("fourierft.scaling", self.scaling)
        check_targets("fourierft.targets", self.targets)


@register
class Fourierft(Strategy):
    name = "fourierft"
    family = "reparameterised"
    description = (
        "peft FourierFT: 3000 trainable Fourier coefficients per qkv weight update, new head trainable"
    )
    Options = FourierftOptions
    defaults = PEFT_PROTOCOL
    source = (
        "n_frequency 3000 and scaling 300 for ViT image classification (Gao et al. 2024, as peft's "
        f"FourierFTConfig documents); {PEFT_PROTOCOL_SOURCE}"
    )

    def prepare(self, model: nn.Module) -> nn.Module:
        from peft import FourierFTConfig

        from strategies._peft import inject, targeted_linears

        for name, module in targeted_linears(model, self.options.targets):
            if self.options.n_frequency > module.in_features * module.out_features:
                raise ValueError(
                    f"fourierft.n_frequency {self.options.n_frequency} exceeds the "
                    f"{module.out_features} x {module.in_features} entries of {name}"
                )
        config = FourierFTConfig(
            n_frequency=self.options.n_frequency,
            scaling=self.options.scaling,
            random_loc_seed=self.options.seed,
            init_weights=True,  # zero spectrum: starts at the backbone (see the module docstring)
            target_modules=list(self.options.targets),
        )
        return inject(self.name, config, model, self.options.targets)
