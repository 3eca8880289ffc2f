"""Checks of strategy options, shared by the Options dataclasses.

A message names the option alone (`r must be at least 1`): `benchmark.config.make_options`, where options are
built from user input, puts the strategy in front (`lora.r must be at least 1`).

They need nothing but Python, so validating `--set lora.r=0` imports neither torch nor peft.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any


def check_positive(option: str, value: float) -> None:
    if value <= 0:
        raise ValueError(f"{option} must be positive; got {value}")


def check_at_least_one(option: str, value: int) -> None:
    if value < 1:
        raise ValueError(f"{option} must be at least 1; got {value}")


def check_dropout(option: str, value: float) -> None:
    if not 0 <= value < 1:
        raise ValueError(f"{option} must be in [0, 1); got {value}")


def check_targets(option: str, targets: Sequence[str]) -> None:
    if isinstance(targets, str) or not targets or not all(isinstance(t, str) and t for t in targets):
        raise ValueError(
            f"{option} must be a tuple of one or more module names, e.g. ('qkv',); got {targets!r}"
        )


def validate_bottleneck(dim: int) -> None:
    if not isinstance(dim, int) or dim < 1:
        raise ValueError(f"dim (bottleneck width) must be a positive integer, e.g. 64; got {dim!r}")


def option(default: Any, help: str) -> Any:
    """An Options field with its meaning, shown by `list` (peft's way: `field(metadata={"help": ...})`)."""
    return dataclasses.field(default=default, metadata={"help": help})
