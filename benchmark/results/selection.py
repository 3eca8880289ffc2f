"""The selection rule, shared by the sweep that applies it and the report that shows it: which search point is
chosen, from rows on disk, on validation only.

A search point is answered once it has a row of `DONE` (a diverged learning rate is an answer, not a gap). Of
the answered points, the one with the best validation top-1 wins; ties go to fewer trainable parameters, then
to the earlier point in the grid. Never wall-clock time, which a shared machine makes noisy; never test.
"""

from __future__ import annotations

import itertools
from typing import Any

from benchmark.results.status import ANSWERS

DONE = ANSWERS  # a point with such a row is searched: a diverged lr is an answer, not a gap


def grid(axes: dict[str, Any]) -> list[dict[str, Any]]:
    """Every point of the axes' product, the last axis varying fastest."""
    return [dict(zip(axes, values, strict=True)) for values in itertools.product(*axes.values())]


def choose(candidates: list[tuple[float, int, int]]) -> int:
    """Of (validation top-1, trainable parameters, grid position) tuples, the position of the best validation
    top-1; ties go to fewer trainable parameters, then to the earlier point in the grid."""
    return min(candidates, key=lambda item: (-item[0], item[1], item[2]))[2]
