"""The report's look: one colour per strategy family, a marker per strategy, and PNG files written
atomically. Shared by every figure module of the report."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display needed

import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402

import strategies  # noqa: E402
from benchmark.results.store import write_file
from strategies.base import FAMILIES  # noqa: E402

LOG_AXES = ("lr", "weight_decay")  # searched on a log grid, so plotted on a log axis
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h", "p"]


def strategy_style(name: str) -> tuple[tuple, str]:
    """Colour and marker of a strategy. The colour is its family's, fixed by the family list, so adding a
    strategy recolours nothing; the marker tells the members of a family apart."""
    palette = sns.color_palette("colorblind", n_colors=len(FAMILIES) + 1)
    if name not in strategies.names():  # results of a strategy since removed
        return palette[-1], MARKERS[0]
    family = strategies.get(name).family
    members = [other for other in strategies.names() if strategies.get(other).family == family]
    return palette[FAMILIES.index(family)], MARKERS[members.index(name) % len(MARKERS)]


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")


def save(fig: plt.Figure, path: Path) -> Path:
    try:
        write_file(path, lambda file: fig.savefig(file, format="png", dpi=130, bbox_inches="tight"))
    finally:
        plt.close(fig)
    return path
