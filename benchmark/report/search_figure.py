"""`<dataset>__<model>__search.png`: validation top-1 over each searched hyper-parameter, one line per strategy."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from benchmark.report.style import LOG_AXES, save, strategy_style
from benchmark.report.style import slug as _slug


def _search_panel(ax: plt.Axes, points: pd.DataFrame, key: str) -> None:
    """Validation top-1 against one searched value, per strategy: with several axes, each value's best
    point over the others; the chosen point is ringed."""
    for strategy, mine in points.groupby("strategy", sort=False):
        colour, marker = strategy_style(strategy)
        best = mine.groupby("value", sort=True)["val_top1"].max()
        ax.plot(best.index, best.values, marker=marker, color=colour, label=strategy)
        chosen = mine[mine["chosen"]]
        ax.plot(chosen["value"], chosen["val_top1"], "o", ms=14, mfc="none", mec=colour, mew=2)
    values = points["value"].astype(float)
    if key in LOG_AXES and (values > 0).any():
        # A grid with 0 (no weight decay) needs a linear stretch around it.
        positive = values[values > 0].min()
        ax.set_xscale("log") if (values > 0).all() else ax.set_xscale("symlog", linthresh=positive)
    ax.set_xlabel(key + (" (log scale)" if key in LOG_AXES else ""))
    ax.set_ylabel("validation top-1 % (first seed)")
    ax.grid(alpha=0.3)


def render_search(points: pd.DataFrame, out: Path) -> list[Path]:
    """`<dataset>__<model>[__<libraries>]__search.png`: one panel per searched key, one line per strategy."""
    written = []
    if points.empty:
        return written
    numeric = points[pd.to_numeric(points["value"], errors="coerce").notna()]
    for (dataset, model, libraries), group in numeric.groupby(["dataset", "model", "libraries"], sort=False):
        keys = list(dict.fromkeys(group["key"]))
        fig, axes = plt.subplots(1, len(keys), figsize=(6 * len(keys), 4.5), squeeze=False)
        for ax, key in zip(axes[0], keys, strict=True):
            _search_panel(ax, group[group["key"] == key].astype({"value": float}), key)
        axes[0][-1].legend(fontsize=8, loc="best")
        of = f" · {libraries}" if libraries else ""  # one figure per library identity, never mixed
        fig.suptitle(f"Validation top-1 over the search (chosen point ringed) — {dataset} · {model}{of}")
        name = "__".join(_slug(part) for part in (dataset, model, libraries) if part)
        written.append(save(fig, out / f"{name}__search.png"))
    return written
