"""FourierFT (Gao et al. 2024): each adapted weight's update is the inverse 2-D Fourier transform of a
sparse spectrum with `n_frequency` trainable coefficients at fixed random frequencies, via peft; new head
trainable.

As the reference's ViT experiments (Chaos96/fourierft, experiments/ViT): the query and value projections
are adapted apart (timm's fused `qkv` is split into q, k and v first, see `strategies._qkv`), 3,000
coefficients each at scaling 300, so ViT-B/16 trains 3,000 x 2 x 12 = 72,000 coefficients; the spectrum
learns at lr 0.2 and the head at lr 7e-4 (their CIFAR-100 script), here the run's lr (7e-4 by default)
for the head and a ratio times it for the spectrum (0.2 / 7e-4 = 285.7 on ViT-B/16; their own search
keeps a fixed ratio of 300). The same frequencies serve every layer (one seed), as the reference's
`--share_entry`.

The ratio follows the layer's size unless `spectrum_lr_ratio` is given: peft's inverse FFT divides by
rows x cols, so one coefficient moves each weight by lr x scaling / (rows x cols), and the reference's
ratio, tuned on 768 x 768 layers, would move a 64 x 64 layer's weights 144x further per step. By default
the ratio is 285.7 x rows x cols / 768^2 (1.98 on 64 x 64 layers), the reference's step per weight on
every layer (measured on the shipped 64-wide backbone, digits, 3 epochs: ratio 1.98 gave 94.2% test
top-1, 10 gave 85.8%, 30 gave 69.9%, 285.7 gave 17.3%).

Departures, in numbers:
- initialisation: peft's default (`init_weights=False`) draws the coefficients from a standard normal,
  so the model would not compute the backbone's function at the start; this module uses peft's other
  initialisation, zero coefficients (`init_weights=True`). The update is linear in the coefficients, so
  they receive gradients from the first step.
- weight decay: the reference decays the spectrum (AdamW, 1e-4 on every parameter); here the spectrum is
  a vector and, like every vector, is exempt (benchmark/train/optimizer_groups.py); the head weight is decayed.
- recipe: the PEFT protocol's batch 128, 1 warm-up epoch and cosine decay, where the reference uses
  batch 50 x 4 accumulation steps = 200, no warm-up and linear decay, 10 epochs in both.
- a layer with fewer than `n_frequency` weights (e.g. 32 x 32 = 1,024 on the tests' tiny ViT) trains its
  whole spectrum, all its weights' frequencies, instead of refusing the option.
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

SPECTRUM = "fourierft_spectrum"  # peft's name of the trainable coefficients
# The reference's spectrum and head learning rates (Chaos96/fourierft, ViT-B/16 on CIFAR-100), on layers of
# 768 x 768 weights.
REFERENCE_RATIO, REFERENCE_WEIGHTS = 0.2 / 7e-4, 768 * 768


@dataclasses.dataclass(frozen=True)
class FourierftOptions:
    n_frequency: int = option(3000, "trainable spectral coefficients per adapted layer (at most its weights)")
    scaling: float = option(300.0, "the update is multiplied by this, as LoRA's alpha / r")
    spectrum_lr_ratio: float | None = option(
        None,
        "the spectrum's lr over the run's (the head's); None: 0.2 / 7e-4 = 285.7 x rows x cols / 768^2",
    )
    seed: int = option(777, "seed of the frequencies' random locations (peft's random_loc_seed default)")
    targets: tuple[str, ...] = option(
        ("q", "v"),
        "module names to adapt: the query and value projections, split out of timm's fused `qkv`",
    )

    def __post_init__(self) -> None:
        check_at_least_one("n_frequency", self.n_frequency)
        check_positive("scaling", self.scaling)
        if self.spectrum_lr_ratio is not None:
            check_positive("spectrum_lr_ratio", self.spectrum_lr_ratio)
        check_targets("targets", self.targets)


@register
class Fourierft(PeftStrategy):
    name = "fourierft"
    family = "reparameterised"
    description = (
        "peft FourierFT: 3000 trainable Fourier coefficients per q and v weight update (qkv split), "
        "spectrum at 285.7x the head's lr on ViT-B/16, new head trainable"
    )
    Options = FourierftOptions
    defaults = PEFT_PROTOCOL | {"lr": 7e-4}
    source = (
        "n_frequency 3000, scaling 300, q and v, spectrum lr 0.2 and head lr 7e-4, weight decay 1e-4 "
        "(Gao et al. 2024, Chaos96/fourierft experiments/ViT/cifar100-base-3000.bash); "
        f"otherwise {PEFT_PROTOCOL_SOURCE}"
    )

    def __init__(self, options: FourierftOptions | None = None) -> None:
        super().__init__(options)
        self._weights: dict[str, int] = {}  # spectrum parameter name -> weights of its layer

    def prepare(self, model: nn.Module) -> nn.Module:
        from peft import FourierFTConfig

        from strategies._peft import ADAPTER, inject, targeted_linears
        from strategies._qkv import split_qkv

        split_qkv(model, self.options.targets)
        weights = {
            name: module.in_features * module.out_features
            for name, module in targeted_linears(model, self.options.targets)
        }
        self._weights = {f"{name}.{SPECTRUM}.{ADAPTER}": count for name, count in weights.items()}
        # Layers with fewer weights than n_frequency train all of them.
        capped = {name: count for name, count in weights.items() if count < self.options.n_frequency}
        config = FourierFTConfig(
            n_frequency=self.options.n_frequency,
            n_frequency_pattern=capped,
            scaling=self.options.scaling,
            random_loc_seed=self.options.seed,
            init_weights=True,  # zero spectrum: starts at the backbone (see the module docstring)
            target_modules=list(self.options.targets),
        )
        return inject(self.name, config, model, self.options.targets)

    def lr_ratio(self, name: str, param: nn.Parameter) -> float:
        name = name.removeprefix("_orig_mod.").removeprefix("module.")  # torch.compile's, DDP's wrappers
        if name not in self._weights:
            return 1.0  # the head
        if self.options.spectrum_lr_ratio is not None:
            return self.options.spectrum_lr_ratio
        return REFERENCE_RATIO * self._weights[name] / REFERENCE_WEIGHTS
