"""Bounds on numbers from the command line and experiment files, checked where they are parsed.

Light on purpose (no torch): the CLI imports it before deciding what to load. A number is refused when it
is not finite, outside its range, or does not fit the results column it ends up in (int64, float64) or
the float32 arithmetic of the optimiser.
"""

from __future__ import annotations

import math

from benchmark.errors import UsageError

INT64_MAX = 2**63 - 1  # every integer results column is int64
FLOAT32_MAX = 3.4028234663852886e38  # learning rates and decays become float32 tensors in fused optimisers
SEED_MAX = 2**63 - 1  # torch.manual_seed and the int64 `seed` column


def check_int(value: int, name: str, low: int = 0, high: int = INT64_MAX) -> int:
    """`value` if low <= value <= high, else a one-line UsageError naming `name`."""
    if not low <= value <= high:
        raise UsageError(f"{name} must be between {low} and {high}; got {value}")
    return value


def check_float(value: float, name: str, low: float = 0.0, high: float = FLOAT32_MAX) -> float:
    """`value` if finite and low <= value <= high, else a one-line UsageError naming `name`."""
    if not math.isfinite(value) or not low <= value <= high:
        raise UsageError(f"{name} must be a finite number between {low:g} and {high:g}; got {value}")
    return value


def check_seeds(seeds: list[int], flag: str) -> list[int]:
    for seed in seeds:
        check_int(seed, f"{flag} (each seed)", 0, SEED_MAX)
    return seeds


def check_img_size(value: int | None, flag: str = "--img-size") -> int | None:
    """None (the model's own size) or a positive number of pixels that fits the pipeline."""
    if value is not None and not 1 <= value <= 65536:
        raise UsageError(f"{flag} must be a number of pixels between 1 and 65536; got {value}")
    return value
