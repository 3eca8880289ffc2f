"""The report's figures: one set per dataset and model; one colour per strategy family in all of them."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.ticker import MaxNLocator

import strategies
from benchmark.data.batches import steps_per_epoch
from benchmark.report.cells import BLOCK
from benchmark.report.class_figures import draw_class_figures
from benchmark.report.style import MARKERS, save, strategy_style
from benchmark.report.style import slug as _slug
from benchmark.results import selection
from benchmark.results.status import Status
from strategies.base import FAMILIES


def _styles(table: pd.DataFrame) -> dict[str, dict]:
    """Colour from the strategy's family, marker from the strategy; further cells of one strategy take the
    next markers."""
    styles, seen = {}, {}
    for _, row in table.iterrows():
        colour, marker = strategy_style(row["strategy"])
        count = seen.get(row["strategy"], 0)
        seen[row["strategy"]] = count + 1
        styles[row["label"]] = {
            "color": colour,
            "marker": MARKERS[(MARKERS.index(marker) + count) % len(MARKERS)],
        }
    return styles


def pareto_front(points: pd.DataFrame, cost: str, value: str) -> pd.DataFrame:
    """Cells that no other cell beats on both: lower cost and higher value."""
    ordered = points.dropna(subset=[cost, value]).sort_values([cost, value], ascending=[True, False])
    front, best = [], -np.inf
    for index, row in ordered.iterrows():
        if row[value] > best:
            front.append(index)
            best = row[value]
    return ordered.loc[front]


def _interval(row: pd.Series, column: str) -> list[list[float]] | None:
    """Asymmetric error bar from the mean to the ends of its bootstrap 95% interval (None for one seed)."""
    low, high = row.get(column + "_ci_low", np.nan), row.get(column + "_ci_high", np.nan)
    return None if pd.isna(low) else [[row[column] - low], [high - row[column]]]


def _range(row: pd.Series, column: str) -> list[list[float]] | None:
    """Error bar from the median to the minimum and maximum over seeds (None for one seed)."""
    if row["seeds"] < 2 or column + "_median" not in row:
        return None
    median = row[column + "_median"]
    return [[median - row[column + "_min"]], [row[column + "_max"] - median]]


def _known(row: pd.Series, key: str) -> bool:
    return key in row and pd.notna(row[key])


def _planned_steps(row: pd.Series) -> str:
    """Optimiser steps the run planned: `steps`, else epochs x steps per epoch ("?" where not recorded)."""
    if _known(row, "steps") and row["steps"] > 0:
        return f"{int(row['steps']):,}"
    if all(_known(row, key) for key in ("epochs", "n_train", "batch_size")):
        return f"{int(row['epochs']) * steps_per_epoch(int(row['n_train']), int(row['batch_size'])):,}"
    return "?"


def budget(row: pd.Series) -> str:
    """A run's training budget in words: planned optimiser steps x batch, optimiser, augmentation, and the
    size of the search grid it was chosen from."""
    space = row.get("search_space")
    points = len(selection.grid(json.loads(space))) if isinstance(space, str) and space else 1
    batch = int(row["batch_size"]) if _known(row, "batch_size") else "?"
    augment = {True: "augmented", False: "no augmentation"}.get(row.get("augment"), "augmentation ?")
    return f"{_planned_steps(row)} steps x {batch}, {row.get('optimizer', '?')}, {augment}, {points} search point(s)"


def budget_note(runs: pd.DataFrame, group: pd.DataFrame) -> str:
    """Says whether the drawn configurations had the same training budget, and lists them when not."""
    rows = runs[runs["cell_hash"].isin(group["cell_hash"])].drop_duplicates("cell_hash")
    labels = group.set_index("cell_hash")["label"]
    budgets = {labels[row["cell_hash"]]: budget(row) for _, row in rows.iterrows()}
    if len(set(budgets.values())) <= 1:
        return f"Same training budget for every strategy: {next(iter(budgets.values()), 'n/a')}."
    listed = "; ".join(f"{label}: {text}" for label, text in sorted(budgets.items()))
    return f"Training budgets differ (each strategy's own recipe, not an equal-budget comparison): {listed}."


def _scatter(
    group: pd.DataFrame,
    styles: dict,
    x: str,
    xlabel: str,
    title: str,
    left_out: list[str],
    extra_note: str = "",
) -> plt.Figure:
    """Test top-1 (mean, bootstrap 95% interval) of each strategy's validation-selected configuration against a
    cost (time: median, min-max), with the Pareto front of those points. `left_out`: strategies not drawn;
    `extra_note`: a line added under the figure (e.g. the budgets)."""
    # Taller and a two-column legend when many strategies share the figure, so that the axes keep their size.
    columns = 1 if len(group) <= 20 else 2
    fig, ax = plt.subplots(figsize=(8, max(5.0, 0.3 * len(group) / columns + 1)))
    drawn: set[tuple[float, float]] = set()
    column = x + "_median" if x + "_median" in group else x
    for _, row in group.iterrows():
        point = (row[column], row["test_top1"])
        # A cell exactly on an earlier one is drawn as a ring around it, so that neither hides the other.
        ring = {"markersize": 14, "markerfacecolor": "none", "markeredgewidth": 2} if point in drawn else {}
        drawn.add(point)
        ax.errorbar(
            *point,
            yerr=_interval(row, "test_top1"),
            xerr=_range(row, x),
            fmt=styles[row["label"]]["marker"],
            color=styles[row["label"]]["color"],
            capsize=4,
            **({"markersize": 8} | ring),
            label=f"{row['label']} (n={int(row['seeds'])})",
        )
    line = pareto_front(group, column, "test_top1")
    ax.plot(line[column], line["test_top1"], "--", color="grey", linewidth=1, label="Pareto front", zorder=0)
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test top-1 accuracy (%)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(
        loc="upper left",
        bbox_to_anchor=(1.02, 1),
        title="strategy (seeds)",
        frameon=False,
        ncols=columns,
        fontsize=9 if columns == 1 else 8,
    )
    note = (
        "Each strategy's configuration selected by validation top-1 (search points: search.png); mean test "
        "top-1 with its bootstrap 95% interval; front over these points."
        + (f"\nNot drawn (not every seed succeeded): {', '.join(left_out)}." if left_out else "")
        + (f"\n{extra_note}" if extra_note else "")
    )
    fig.text(0.01, -0.02, note, fontsize=8, va="top", wrap=True)
    return fig


def _costs(group: pd.DataFrame, styles: dict, title: str) -> plt.Figure:
    fig, axes = plt.subplots(1, 2, figsize=(12, max(3, 0.5 * len(group) + 1.5)))
    colours = [styles[label]["color"] for label in group["label"]]
    for ax, column, xlabel in (
        (axes[0], "peak_memory_mib", "peak memory (MiB, median; bar: min–max over seeds)"),
        (axes[1], "train_images_per_second", "training throughput (images/s, median; bar: min–max)"),
    ):
        errors = np.array([_range(row, column) or [[0], [0]] for _, row in group.iterrows()])[..., 0].T
        ax.barh(group["label"], group[column + "_median"], xerr=errors, color=colours, capsize=3)
        ax.set_xlabel(xlabel)
        ax.invert_yaxis()
        ax.grid(True, axis="x", alpha=0.3)
    axes[1].set_yticklabels([])
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def _learning_curves(history: pd.DataFrame, styles: dict, title: str) -> plt.Figure:
    """Validation top-1 and training loss per epoch: one row of panels per strategy family, so that each
    panel holds a few lines; within a family, lines differ by dash and marker."""
    history = history.assign(
        val_top1_percent=history["val_top1"] * 100,
        family=[_family(label.split(" ")[0]) for label in history["label"]],
    )
    families = [family for family in FAMILIES + ("other",) if family in set(history["family"])]
    fig, axes = plt.subplots(len(families), 2, figsize=(13, 3.2 * len(families) + 0.8), squeeze=False)
    for row, family in enumerate(families):
        mine = history[history["family"] == family]
        palette = {label: styles[label]["color"] for label in mine["label"].unique()}
        markers = {label: styles[label]["marker"] for label in mine["label"].unique()}
        for ax, column, ylabel in (
            (axes[row, 0], "val_top1_percent", "validation top-1 (%)"),
            (axes[row, 1], "train_loss", "training loss"),
        ):
            sns.lineplot(
                data=mine,
                x="epoch",
                y=column,
                hue="label",
                style="label",
                palette=palette,
                markers=markers,
                dashes=True,
                errorbar="sd",
                ax=ax,
                legend=ax is axes[row, 1],
            )
            ax.set_xlabel("epoch" if row == len(families) - 1 else "")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_ylabel(ylabel)
            ax.grid(True, alpha=0.3)
        axes[row, 0].set_title(family, loc="left", fontsize=10, fontweight="bold")
        axes[row, 1].legend(loc="upper left", bbox_to_anchor=(1.02, 1), frameon=False, fontsize=8)
    fig.suptitle(f"{title}\n(band: ± 1 sd over seeds)")
    fig.tight_layout()
    return fig


def _family(strategy: str) -> str:
    return strategies.get(strategy).family if strategy in strategies.names() else "other"


def compared(table: pd.DataFrame) -> pd.DataFrame:
    """The cells the accuracy figures draw and build their Pareto fronts from: each strategy's configuration
    selected by validation, where every asked seed succeeded (cells.aggregate's table in)."""
    return table[table["selected"] & table["complete"]]


def _block_figures(
    runs: pd.DataFrame,
    group: pd.DataFrame,
    styles: dict,
    left_out: list[str],
    mine: pd.DataFrame,
    epochs: pd.DataFrame,
    prefix: Path,
    where: str,
) -> list[Path]:
    """A block's accuracy-vs-parameters, accuracy-vs-time, costs and learning-curve figures."""
    written = []
    written.append(
        save(
            _scatter(
                group,
                styles,
                "trainable_params",
                "trainable parameters (log scale)",
                f"Accuracy vs trainable parameters — {where}",
                left_out,
            ),
            Path(f"{prefix}accuracy_vs_params.png"),
        )
    )
    written.append(
        save(
            _scatter(
                group,
                styles,
                "train_seconds",
                "training time (s, median over seeds; bar: min–max; log scale)",
                f"Accuracy vs training time — {where}",
                left_out,
                budget_note(runs, group),
            ),
            Path(f"{prefix}accuracy_vs_time.png"),
        )
    )
    written.append(
        save(_costs(group, styles, f"Memory and throughput — {where}"), Path(f"{prefix}costs.png"))
    )
    history = epochs.merge(mine[["run_id", "label"]], on="run_id") if not epochs.empty else pd.DataFrame()
    if not history.empty:
        written.append(
            save(
                _learning_curves(history, styles, f"Learning curves — {where}"),
                Path(f"{prefix}learning_curves.png"),
            )
        )
    return written


def render_all(
    runs: pd.DataFrame,
    table: pd.DataFrame,
    epochs: pd.DataFrame,
    classes: pd.DataFrame,
    confusion: pd.DataFrame,
    out: Path,
) -> list[Path]:
    """The figures of each block (dataset, model, training size), from each strategy's validation-selected
    configuration whose every seed succeeded (`table`: cells.aggregate's)."""
    ok = runs[runs["status"] == Status.OK].merge(table[["cell_hash", "label"]], on="cell_hash")
    written = []
    for key, group in compared(table).groupby(BLOCK, sort=False):
        block = table[(table[BLOCK] == pd.Series(key, index=BLOCK)).all(axis=1)]
        dataset, model, size, libraries = key
        left_out = [
            f"{row['label']} ({row['outcome']})"
            for _, row in block.iterrows()
            if row["selected"] and not row["complete"]
        ]
        styles = _styles(group)
        extra = [_slug(text) for text in (size, libraries) if text]  # libraries: where several versions
        prefix = out / "__".join([_slug(dataset), _slug(model), *extra, ""])
        where = f"{dataset} · {model}" + (f" · train size {size}" if size else "")
        where += f" · {libraries}" if libraries else ""
        mine = ok[ok["cell_hash"].isin(group["cell_hash"])]
        written += _block_figures(runs, group, styles, left_out, mine, epochs, prefix, where)
        written += draw_class_figures(mine, group, classes, confusion, prefix, where)
    return written
