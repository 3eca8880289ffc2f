"""Data efficiency: test top-1 against the number of labelled images used, one line per strategy.

The x axis is `n_labelled`, training plus validation images: the validation split chose the epoch (and any
search point), so it is labelled data the run used, and with a fixed validation split (the data-efficiency
protocol's 1,000 images of CIFAR) leaving it out would flatter the smallest training sets.

For runs that differ in `train_size` (e.g. protocols/data_efficiency.yaml). At each (strategy, size), the
cell selected by validation is the one shown (cells.selection, as everywhere in the report: a tuned sweep's
choice, else the best mean validation top-1 over the seeds the candidates share; nothing is chosen by looking
at test), with the mean of its test top-1 over seeds and its bootstrap 95% interval. A cell whose seeds did not
all succeed is left out rather than drawn from its survivors.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from benchmark.report import cells, statistics
from benchmark.report.plots import strategy_style
from benchmark.results.status import Status

PANEL = ["dataset", "model"]  # one panel each: sizes of different datasets are not comparable


def _ok(runs: pd.DataFrame) -> pd.DataFrame:
    return runs[runs["status"] == Status.OK]


def differs_in_train_size(runs: pd.DataFrame) -> bool:
    """Whether the report should draw the figure: some dataset and model has runs at two training sizes."""
    if "train_size" not in runs.columns:
        return False
    ok = _ok(runs).assign(train_size=lambda frame: frame["train_size"].fillna(""))
    return bool(len(ok)) and bool((ok.groupby(PANEL)["train_size"].nunique() > 1).any())


def efficiency_points(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, model, strategy, n_labelled): the validation-selected cell's test top-1 over seeds, as
    percentages (mean, sample std, bootstrap 95% interval `low`, `high`; NaN for one seed) and its seeds.
    Only cells whose every asked seed succeeded."""
    outcomes = cells.seed_outcomes(runs)
    chosen = cells.selection(outcomes)
    points = []
    for cell_hash in chosen.index[chosen["complete"]]:
        first = outcomes[outcomes["cell_hash"] == cell_hash].iloc[0]
        test = cells.per_seed(outcomes, cell_hash, "test_top1")  # percent
        low, high = statistics.bootstrap_interval(test)
        points.append(
            {key: first[key] for key in [*PANEL, "strategy", "n_train"]}
            | {"n_labelled": int(first["n_train"]) + int(first["n_val"])}  # rows from before the column too
            | {"mean": test.mean(), "std": test.std(ddof=1), "low": low, "high": high, "seeds": len(test)}
        )
    columns = [*PANEL, "strategy", "n_train", "n_labelled", "mean", "std", "low", "high", "seeds"]
    return pd.DataFrame(points, columns=columns).sort_values(
        [*PANEL, "strategy", "n_labelled"], ignore_index=True
    )


def data_efficiency_figure(runs: pd.DataFrame) -> plt.Figure:
    """Test top-1 (%) against labelled images, training plus validation (log scale), one panel per dataset
    and model, one line per strategy coloured by its family; bars: the bootstrap 95% interval of the mean."""
    points = efficiency_points(runs)
    panels = list(points.groupby(PANEL).groups) or [("no runs", "")]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.2), squeeze=False)
    for ax, (dataset, model) in zip(axes[0], panels, strict=True):
        mine = points[(points["dataset"] == dataset) & (points["model"] == model)]
        for strategy, line in mine.groupby("strategy", sort=True):
            colour, marker = strategy_style(strategy)
            ax.errorbar(
                line["n_labelled"],
                line["mean"],
                yerr=[(line["mean"] - line["low"]).fillna(0), (line["high"] - line["mean"]).fillna(0)],
                label=strategy,
                color=colour,
                marker=marker,
                capsize=3,
            )
        ax.set_xscale("log")
        ax.set(
            xlabel="labelled images used: training + validation (log scale)",
            ylabel="test top-1 % (best validation epoch)",
        )
        ax.set_title(f"{dataset}, {model}", fontsize=10)
        ax.grid(alpha=0.3)
        if len(mine):
            ax.legend(fontsize=8, title="strategy")
    fig.suptitle(
        "Data efficiency: test top-1 of each strategy's validation-selected configuration against labelled "
        "images used (training + validation)\n(bars: bootstrap 95% interval over seeds; configurations with a "
        "failed seed are not drawn)",
        fontsize=10,
    )
    fig.tight_layout()
    return fig
