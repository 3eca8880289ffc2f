"""Data efficiency: test top-1 against the number of training images, one line per strategy.

For runs that differ in `train_size` (e.g. protocols/data_efficiency.yaml). At each (strategy, size), the
cell with the best mean validation top-1 is the one shown (as everywhere in the report: nothing is chosen
by looking at test), with the mean and sample standard deviation of its test top-1 over seeds.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from benchmark.plots import strategy_style  # noqa: E402

PANEL = ["dataset", "model"]  # one panel each: sizes of different datasets are not comparable


def _ok(runs: pd.DataFrame) -> pd.DataFrame:
    return runs[runs["status"] == "ok"]


def differs_in_train_size(runs: pd.DataFrame) -> bool:
    """Whether the report should draw the figure: some dataset and model has runs at two training sizes."""
    if "train_size" not in runs.columns:
        return False
    ok = _ok(runs).assign(train_size=lambda frame: frame["train_size"].fillna(""))
    return bool(len(ok)) and bool((ok.groupby(PANEL)["train_size"].nunique() > 1).any())


def efficiency_points(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, model, strategy, n_train): the validation-selected cell's test top-1 over seeds,
    as percentages (mean, sample std; std is NaN for one seed) and its number of seeds."""
    ok = _ok(runs)
    cells = ok.groupby([*PANEL, "strategy", "n_train", "cell_hash"]).agg(
        val=("best_val_top1", "mean"),
        mean=("test_top1", "mean"),
        std=("test_top1", "std"),
        seeds=("seed", "nunique"),
    )
    cells = cells.reset_index().sort_values("val", ascending=False, kind="stable")
    chosen = cells.drop_duplicates([*PANEL, "strategy", "n_train"]).sort_values(
        [*PANEL, "strategy", "n_train"]
    )
    chosen[["mean", "std"]] *= 100  # fractions -> %
    return chosen.drop(columns=["val", "cell_hash"]).reset_index(drop=True)


def data_efficiency_figure(runs: pd.DataFrame) -> plt.Figure:
    """Test top-1 (%) against training images (log scale), one panel per dataset and model, one line
    per strategy coloured by its family; bars are the sample standard deviation over seeds."""
    points = efficiency_points(runs)
    panels = list(points.groupby(PANEL).groups) or [("no runs", "")]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.2), squeeze=False)
    for ax, (dataset, model) in zip(axes[0], panels, strict=True):
        mine = points[(points["dataset"] == dataset) & (points["model"] == model)]
        for strategy, line in mine.groupby("strategy", sort=True):
            colour, marker = strategy_style(strategy)
            ax.errorbar(
                line["n_train"],
                line["mean"],
                yerr=line["std"].fillna(0),
                label=strategy,
                color=colour,
                marker=marker,
                capsize=3,
            )
        ax.set_xscale("log")
        ax.set(xlabel="training images (log scale)", ylabel="test top-1 % (best validation epoch)")
        ax.set_title(f"{dataset}, {model}", fontsize=10)
        ax.grid(alpha=0.3)
        if len(mine):
            ax.legend(fontsize=8, title="strategy")
    fig.suptitle("Data efficiency: test top-1 against training-set size")
    fig.tight_layout()
    return fig
