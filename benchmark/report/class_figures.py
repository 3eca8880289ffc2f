"""Per-class figures of the report: confusion matrices (one panel per strategy) and per-class test top-1."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from benchmark.report.style import save


def _confusions(
    best_runs: pd.DataFrame, confusion: pd.DataFrame, class_names: list[str], title: str
) -> plt.Figure:
    """One panel per compared cell. matplotlib's `imshow` rather than seaborn's `heatmap`, which draws the
    whole figure once per panel (to check its tick labels for overlap): quadratic in the panels, 300 s of a
    390 s report with 45 strategies."""
    count = len(best_runs)
    columns = min(count, 3 if count <= 9 else 5)
    rows = int(np.ceil(count / columns))
    classes = len(class_names)
    side = 4 if classes <= 20 else 6
    fig, axes = plt.subplots(rows, columns, figsize=(side * columns + 1, side * rows + 0.5), squeeze=False)
    for ax in axes.flat[count:]:
        ax.axis("off")
    for ax, (_, run) in zip(axes.flat[:count], best_runs.iterrows(), strict=True):
        cells = confusion[confusion["run_id"] == run["run_id"]]
        matrix = np.zeros((classes, classes))
        matrix[cells["true_index"], cells["predicted_index"]] = cells["count"]
        recall = matrix / matrix.sum(axis=1, keepdims=True).clip(min=1)
        image = ax.imshow(recall * 100, vmin=0, vmax=100, cmap="Blues")
        if classes <= 20:
            ax.set_xticks(range(classes), class_names, rotation=90)
            ax.set_yticks(range(classes), class_names)
        if classes <= 10:
            _annotate(ax, recall * 100)
        ax.set_title(
            f"{run['label']}\n(seed {run['seed']}, val top-1 {run['best_val_top1']:.1%}, "
            f"test top-1 {run['test_top1']:.1%})",
            fontsize=10,
        )
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
    fig.colorbar(image, ax=axes.flat[count - 1], label="% of the true class", fraction=0.046)
    fig.tight_layout()
    fig.suptitle(title, y=1.0 + 0.3 / fig.get_figheight(), fontsize=13)  # above the first row's titles
    return fig


def _annotate(ax: plt.Axes, percent: np.ndarray) -> None:
    """Each cell's percentage, white on the dark half of the colour map (image coordinates: cell centres at
    integers)."""
    for (row, column), value in np.ndenumerate(percent):
        colour = "white" if value > 50 else "black"
        ax.text(column, row, f"{value:.0f}", ha="center", va="center", fontsize=7, color=colour)


def _per_class(per_class: pd.DataFrame, order: list[str], title: str) -> plt.Figure:
    matrix = (
        per_class.pivot_table(index="label", columns="class_index", values="accuracy", aggfunc="mean") * 100
    )
    matrix = matrix.reindex([label for label in order if label in matrix.index])  # the tables' order
    names = per_class.drop_duplicates("class_index").set_index("class_index")["class_name"]
    classes = matrix.shape[1]
    fig, ax = plt.subplots(figsize=(max(8, 0.16 * classes + 3), 0.5 * len(matrix) + 2))
    sns.heatmap(
        matrix,
        ax=ax,
        vmin=0,
        vmax=100,
        cmap="viridis",
        cbar_kws={"label": "test accuracy of the class (%)"},
        xticklabels=[names[index] for index in matrix.columns],
        annot=classes <= 10,
        fmt=".0f",
    )
    ax.set_xlabel("class")
    ax.set_ylabel("strategy")
    ax.tick_params(axis="x", labelsize=7 if classes > 20 else 9)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def draw_class_figures(
    mine: pd.DataFrame,
    group: pd.DataFrame,
    classes: pd.DataFrame,
    confusion: pd.DataFrame,
    prefix: Path,
    where: str,
) -> list[Path]:
    """Confusion matrices and per-class accuracy of the block's compared cells (`group`; `mine`: their ok runs)."""
    per_class = classes.merge(mine[["run_id", "label"]], on="run_id") if not classes.empty else pd.DataFrame()
    if per_class.empty:
        return []
    names = list(per_class.drop_duplicates("class_index").sort_values("class_index")["class_name"])
    # Each cell's run with the best validation top-1: chosen without looking at test.
    best = mine.sort_values("best_val_top1", ascending=False).drop_duplicates("label")
    best = best.set_index("label").loc[[label for label in group["label"] if label in set(best["label"])]]
    confusions = _confusions(
        best.reset_index(), confusion, names, f"Confusion matrices (best validation run) — {where}"
    )
    title = f"Per-class test accuracy (mean over seeds) — {where}"
    return [
        save(confusions, Path(f"{prefix}confusion.png")),
        save(_per_class(per_class, list(group["label"]), title), Path(f"{prefix}per_class.png")),
    ]
