"""Cells, their seeds, and which cell of each strategy the report compares.

A cell is one configuration (dataset, model, strategy, options, hyper-parameters; `cell_hash`) over its
seeds. Each seed counts once: its successful row if it has one, else its last row (failed, diverged or
cancelled); rows superseded by a `--force` rerun are left out. Rows of another torch/timm/peft
major.minor form blocks of their own, and rows of an older code version than their strategy's newest in
the block form cells of their own, shown as not selected (`identity.separate`): no mean mixes identities.
Of each strategy's cells in a block (dataset, model, training size, libraries) one is *selected* (one per
backbone weights: a strategy on random initialisation is a separate entry, not a candidate), by validation
only: a tuned sweep's chosen point, else the cell with the best mean validation top-1 over the seeds the
candidates share. The others are search points or
unselected configurations, shown apart and never compared.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

import strategies
from benchmark.report import statistics
from benchmark.results import columns, identity
from benchmark.results.selection import choose, grid
from benchmark.results.status import FAILURES, Status

MiB = 2**20
FAILED_STATUSES = FAILURES
# One table, one family of comparisons each; `libraries` (identity.separate) is "" unless the results hold
# several torch/timm/peft major.minor versions.
BLOCK = ["dataset", "model", "train_size", "libraries"]
# A strategy on another backbone's weights (pretrained or random initialisation) is another entry of the
# table, not a configuration for validation to choose between: selection picks one cell per entry.
ENTRY = ["strategy", "weights"]
# Every run column with a direction is aggregated (mean and sample std over seeds), and total_params.
AGGREGATED = [column.name for column in columns.RUNS if column.better] + ["total_params"]
PERCENT = ["test_top1", "test_top5", "best_val_top1", "test_macro_f1"]  # fractions shown as percent
INTERVALS = ["test_top1", "best_val_top1", "test_top5", "ppt"]  # bootstrap 95% interval of the mean
SPREADS = ["train_seconds", "train_images_per_second", "peak_memory_mib"]  # median [min-max]
HYPER_PARAMETERS = [
    "lr",
    "epochs",
    "batch_size",
    "optimizer",
    "weight_decay",
    "augment",
    "img_size",
    "weights",
]


def seed_outcomes(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (cell, seed): the seed's last successful row, else its last row. Files are read in run-id
    order, which starts with the UTC start time, so "last" is the latest."""
    runs = identity.separate(runs[runs["status"] != Status.SUPERSEDED])
    runs = runs.assign(train_size=runs["train_size"].fillna("").astype(str) if "train_size" in runs else "")
    ranked = runs.assign(_ok=runs["status"] == Status.OK).sort_values("_ok", kind="stable")
    return ranked.drop_duplicates(["cell_hash", "seed"], keep="last").drop(columns="_ok").sort_index()


def per_seed(outcomes: pd.DataFrame, cell_hash: str, column: str) -> pd.Series:
    """A cell's successful values of one column, indexed by seed (percent for accuracies, PPT a fraction)."""
    ok = outcomes[(outcomes["cell_hash"] == cell_hash) & (outcomes["status"] == Status.OK)].set_index("seed")
    if column == "ppt":
        return statistics.ppt(ok["test_top1"].astype(float), _ppt_params(ok))
    if column == "peak_memory_mib":
        return ok["peak_memory_bytes"].astype(float) / MiB
    return ok[column].astype(float) * (100 if column in PERCENT else 1)


def _ppt_params(rows: pd.DataFrame) -> pd.Series:
    """Trainable parameters outside the head (V-PETL Bench's count); all trainable ones where not recorded."""
    every = rows["trainable_params"].astype(float)
    return rows.get("trainable_params_excluding_head", every).astype(float).fillna(every)


def _cell(group: pd.DataFrame, outcomes: pd.DataFrame) -> dict:
    """One cell's seeds: counts, means and sample standard deviations, intervals and spreads."""
    first, ok = group.iloc[0], group[group["status"] == Status.OK]
    keys = (*BLOCK, "strategy", "strategy_options", "cell_hash", *HYPER_PARAMETERS)
    cell = {key: first[key] for key in keys if key in group}
    counts = group["status"].value_counts()
    cell["seeds"], cell["rows"] = len(ok), len(group)
    cell["not_ok"] = "/".join(str(int(counts.get(status, 0))) for status in FAILED_STATUSES)
    cell["failed_runs"] = int(group["status"].isin(FAILED_STATUSES).sum())
    for column in AGGREGATED:
        values = ok[column].astype(float) if column in ok and len(ok) else pd.Series(dtype=float)
        scale = 100 if column in PERCENT else 1
        cell[column] = values.mean() * scale if len(values) else np.nan
        cell[column + "_std"] = values.std(ddof=1) * scale if len(values) > 1 else np.nan
    for column in INTERVALS:
        values = per_seed(outcomes, first["cell_hash"], column)
        cell.setdefault(column, values.mean() if len(values) else np.nan)
        cell.setdefault(column + "_std", values.std(ddof=1) if len(values) > 1 else np.nan)
        cell[column + "_ci_low"], cell[column + "_ci_high"] = statistics.bootstrap_interval(values)
    for column in SPREADS:
        values = per_seed(outcomes, first["cell_hash"], column)
        median, low, high = statistics.spread(values)
        cell[column + "_median"], cell[column + "_min"], cell[column + "_max"] = median, low, high
    return cell


def aggregate(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per cell: seeds, means, standard deviations, intervals and spreads of successful runs,
    failure counts, which cell of its strategy is selected, and whether all the block's seeds succeeded."""
    outcomes = seed_outcomes(runs)
    table = pd.DataFrame([_cell(group, outcomes) for _, group in outcomes.groupby("cell_hash", sort=False)])
    table["trainable_percent"] = 100 * table["trainable_params"] / table["total_params"]
    table["peak_memory_mib"] = table["peak_memory_bytes"] / MiB
    table["label"] = _labels(table)
    table = _select(table, outcomes)
    return table.sort_values(
        ["dataset", "model", "train_size", "trainable_params", "label"], ignore_index=True
    )


# --- which cell of each strategy is compared ---------------------------------------------------------------


def chosen_point(rows: pd.DataFrame) -> str | None:
    """A search's chosen point (JSON) from its rows, by the rule `run` used (selection.choose on the successful
    search rows: best validation top-1, then fewer trainable parameters, then grid order); None if none
    succeeded."""
    points = grid(json.loads(rows["search_space"].iloc[0]))
    position = {json.dumps(point): index for index, point in enumerate(points)}
    ok = rows[(rows["status"] == Status.OK) & (rows["stage"] == "search")].drop_duplicates(
        "config_hash", keep="last"
    )
    candidates = [
        (float(row["best_val_top1"]), int(row["trainable_params"]), position[row["search_point"]])
        for _, row in ok.iterrows()
        if row["search_point"] in position
    ]
    return json.dumps(points[choose(candidates)]) if candidates else None


def _candidates(mine: pd.DataFrame, outcomes: pd.DataFrame) -> tuple[list[str], list[str]]:
    """A strategy's cells in one block: (candidates for selection, search points not chosen). A tuned
    search offers only its chosen point; plain cells are all candidates."""
    rows = outcomes[outcomes["cell_hash"].isin(mine["cell_hash"])]
    tuned = (
        rows["search_space"].notna() & rows["stage"].isin(("search", "final")) if "stage" in rows else None
    )
    if tuned is None or not tuned.any():
        return list(mine["cell_hash"]), []
    searched = set(rows.loc[tuned, "cell_hash"])
    candidates = [cell for cell in mine["cell_hash"] if cell not in searched]
    for _, group in rows[tuned].groupby("search_space", sort=False):
        chosen = chosen_point(group)
        candidates += list(group.loc[group["search_point"] == chosen, "cell_hash"].unique())
    if not candidates:  # every search point failed: the strategy is still shown, with its failures
        return sorted(searched), []
    return candidates, [cell for cell in searched if cell not in candidates]


def _pick(candidates: list[str], outcomes: pd.DataFrame) -> str:
    """The candidate with the best mean validation top-1 over the seeds every successful candidate has (like
    with like); ties go to more seeds, then to the earlier cell. With no successful candidate, the one with
    the most seeds run, so that a strategy that failed everywhere still shows its failures."""
    values = {cell: per_seed(outcomes, cell, "best_val_top1") for cell in candidates}
    succeeded = [cell for cell in candidates if len(values[cell])]
    if not succeeded:
        return max(candidates, key=lambda cell: int((outcomes["cell_hash"] == cell).sum()))
    shared = sorted(set.intersection(*(set(values[cell].index) for cell in succeeded)))

    def score(cell: str) -> tuple[float, int]:
        mine = values[cell][shared] if shared else values[cell]  # no shared seed: no like-for-like to be had
        return float(mine.mean()), len(values[cell])

    return max(succeeded, key=score)


def selection(outcomes: pd.DataFrame) -> pd.DataFrame:
    """Per cell (seed_outcomes' rows in): `role` (selected, search point, not selected), `selected`, the
    seeds `asked` (for a selected cell, every seed with a row in a selected cell of its block; else its own)
    and `complete` (selected, and every asked seed succeeded)."""
    outcomes = outcomes.assign(weights=outcomes.get("weights", ""))
    frame = outcomes.drop_duplicates("cell_hash")[[*BLOCK, *ENTRY, "cell_hash"]].set_index("cell_hash")
    role = pd.Series("not selected", index=frame.index)
    older = outcomes.loc[outcomes["older_code"], "cell_hash"].unique()  # whole cells (identity.separate)
    role[older] = identity.OLDER_CODE
    for _, mine in frame.reset_index().groupby([*BLOCK, *ENTRY], sort=False, dropna=False):
        mine = mine[~mine["cell_hash"].isin(older)]
        if mine.empty:  # only older code: shown, never selected
            continue
        candidates, searched = _candidates(mine, outcomes)
        role[searched] = "search point"
        role[_pick(candidates, outcomes)] = "selected"
    frame = frame.assign(role=role, selected=role == "selected")
    seeds = outcomes.groupby("cell_hash")["seed"].nunique()
    ok = outcomes[outcomes["status"] == Status.OK].groupby("cell_hash")["seed"].nunique()
    chosen = outcomes[outcomes["cell_hash"].isin(frame.index[frame["selected"]])]
    block_seeds = chosen.groupby(BLOCK)["seed"].nunique()
    blocks = pd.MultiIndex.from_frame(frame[BLOCK])
    frame["asked"] = np.where(frame["selected"], block_seeds.reindex(blocks).to_numpy(), seeds[frame.index])
    frame["complete"] = frame["selected"] & (ok.reindex(frame.index).fillna(0) == frame["asked"])
    return frame[["role", "selected", "asked", "complete"]]


def _select(table: pd.DataFrame, outcomes: pd.DataFrame) -> pd.DataFrame:
    """The table with selection's columns, and `outcome`: "ok", or e.g. "2/3 diverged"."""
    table = table.join(selection(outcomes), on="cell_hash")
    table["asked"] = table["asked"].astype(int)
    table["outcome"] = [_outcome(row) for _, row in table.iterrows()]
    return table


def _outcome(row: pd.Series) -> str:
    """ "ok" when every asked seed succeeded, else what became of the others, e.g. "2/3 diverged"."""
    counts = dict(zip(FAILED_STATUSES, map(int, row["not_ok"].split("/")), strict=True))
    parts = [f"{count}/{row['asked']} {status}" for status, count in counts.items() if count]
    missing = row["asked"] - row["rows"]
    parts += [f"{missing}/{row['asked']} not run"] if missing > 0 else []
    return ", ".join(parts) or Status.OK.value


def _label(row: pd.Series, varying: list[str]) -> str:
    options = json.loads(row["strategy_options"]) if row["strategy_options"] else {}
    registered = row["strategy"] in strategies.names()  # results may come from strategies since removed
    defaults = vars(strategies.get(row["strategy"]).Options()) if registered else {}
    changed = [
        f"{key}={value}"
        for key, value in options.items()
        if key in defaults and list(np.atleast_1d(defaults[key])) != list(np.atleast_1d(value))
    ]
    changed += [f"{key}={short(row[key])}" for key in varying]
    return row["strategy"] + (f" ({', '.join(changed)})" if changed else "")


def short(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _labels(table: pd.DataFrame) -> list[str]:
    """Strategy names, plus whatever distinguishes cells that share one within a block."""
    labels = []
    for _, row in table.iterrows():
        same = (
            table[[*BLOCK, "strategy", "strategy_options"]] == row[[*BLOCK, "strategy", "strategy_options"]]
        ).all(axis=1)
        peers = table[same]
        varying = [key for key in HYPER_PARAMETERS if key in peers and peers[key].astype(str).nunique() > 1]
        labels.append(_label(row, varying))
    return labels
