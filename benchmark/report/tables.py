"""The report's tables, one TextTable each (terminal, markdown and LaTeX show the same cells in bold).

Summary: per block (dataset, model, training size), the validation-selected configuration of each strategy,
with mean ± sample std [bootstrap 95% interval] over seeds, a paired comparison with the reference strategy,
the PPT score and the costs. Bold: in each accuracy column, the best mean and every strategy not
significantly worse than it (statistics.not_worse); for parameter counts the smallest; for wall-clock costs
the best median and whatever its [min-max] overlaps (statistics.distinct_costs); never peak memory on CPU.
Only selected cells whose every asked seed succeeded are compared, ranked or bold.
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pandas as pd
from scipy import stats

from benchmark.report import statistics
from benchmark.report.cells import BLOCK, chosen_point, per_seed, short
from benchmark.report.text_table import TextTable
from benchmark.results import identity, selection
from benchmark.results.status import Status


@dataclasses.dataclass(frozen=True)
class Shown:
    """A summary column: the aggregated column it shows, its header, digits, and how it is bold."""

    name: str
    header: str
    digits: int
    rule: str = ""  # "significance", "smallest", "spread-lower", "spread-higher", "memory" or "" (never)
    better: str = ""  # "higher" or "lower": the arrow in the header


SUMMARY = [
    Shown("seeds", "seeds ok", 0),
    Shown("test_top1", "test top-1 %", 2, "significance", "higher"),
    Shown("reference", "vs reference", 2),
    Shown("best_val_top1", "val top-1 %", 2, "significance", "higher"),
    Shown("test_top5", "test top-5 %", 2, "significance", "higher"),
    Shown("ppt", "PPT", 3, "significance", "higher"),
    Shown("trainable_params", "trainable params", 0, "smallest", "lower"),
    Shown("trainable_percent", "trainable %", 3, "smallest", "lower"),
    Shown("train_seconds", "train s", 2, "spread-lower", "lower"),
    Shown("train_images_per_second", "train img/s", 0, "spread-higher", "higher"),
    Shown("peak_memory_mib", "peak memory MiB", 0, "memory", "lower"),
    Shown("outcome", "outcome", 0),
]
ACCURACIES = {"test_top1", "best_val_top1", "test_top5", "ppt"}


def interval_text(mean: float, std: float, low: float, high: float, digits: int) -> str:
    """mean ± std [95% interval]; the mean alone for one seed; "-" for none."""
    if pd.isna(mean):
        return "-"
    text = f"{mean:.{digits}f}"
    text += "" if pd.isna(std) else f" ± {std:.{digits}f}"
    return text + ("" if pd.isna(low) else f" [{low:.{digits}f}, {high:.{digits}f}]")


def spread_text(median: float, low: float, high: float, digits: int, count: int) -> str:
    """median [min–max] over seeds; the single reading alone for one seed."""
    if pd.isna(median):
        return "-"
    text = f"{median:,.{digits}f}"
    return text if count < 2 else f"{text} [{low:,.{digits}f}–{high:,.{digits}f}]"


def _text(row: pd.Series, shown: Shown, reference: str) -> str:
    name = shown.name
    if name == "seeds":
        return f"{row['seeds']}/{row['asked']}"
    if name == "reference":
        return _reference_text(row, reference)
    if name == "outcome":
        return row["outcome"]
    if name in ACCURACIES:
        if not row["complete"]:  # never the survivors' mean as the strategy's
            return row["outcome"] if name == "test_top1" else "-"
        return interval_text(
            row[name], row[name + "_std"], row[name + "_ci_low"], row[name + "_ci_high"], shown.digits
        )
    if name + "_median" in row:
        return spread_text(
            row[name + "_median"], row[name + "_min"], row[name + "_max"], shown.digits, row["seeds"]
        )
    return "-" if pd.isna(row[name]) else f"{row[name]:,.{shown.digits}f}"


def _bold(group: pd.DataFrame, shown: Shown, outcomes: pd.DataFrame, cpu: bool) -> set[str]:
    """Cell hashes to mark in this column, among the block's complete selected cells."""
    compared = group[group["complete"]]
    if compared.empty or not shown.rule or (shown.rule == "memory" and cpu):
        return set()
    hashes = list(compared["cell_hash"])
    if shown.rule == "significance":
        return statistics.not_worse({h: per_seed(outcomes, h, shown.name) for h in hashes}, shown.better)
    if shown.rule.startswith("spread"):
        readings = {h: per_seed(outcomes, h, shown.name).to_numpy() for h in hashes}
        return statistics.distinct_costs(readings, shown.better)
    column = compared[shown.name + "_median" if shown.rule == "memory" else shown.name]
    return set(compared.loc[column == column.min(), "cell_hash"]) if column.notna().any() else set()


REFERENCE_COLUMNS = ["reference_difference", "reference_p", "reference_p_holm", "reference_seeds"]


def with_reference(table: pd.DataFrame, outcomes: pd.DataFrame, reference: str) -> pd.DataFrame:
    """The table with each complete selected cell compared with its block's reference strategy on test top-1:
    mean paired difference (points; cell - reference), shared seeds, paired t-test p and Holm-adjusted p over
    the block's strategies; `reference_note` says why a block has no comparison."""
    table = table.assign(
        **{column: np.nan for column in REFERENCE_COLUMNS}, reference_note="", is_reference=False
    )
    for _, group in table[table["selected"]].groupby(BLOCK, sort=False):
        # on several backbones' weights (pretrained, random init), the reference entry validation prefers
        base = group[group["strategy"] == reference].sort_values("best_val_top1", ascending=False).iloc[:1]
        table.loc[base.index, "is_reference"] = True
        if base.empty or not base["complete"].iloc[0]:
            why = "has no runs here" if base.empty else f"is {base['outcome'].iloc[0]}"
            table.loc[group.index, "reference_note"] = f"no comparison: the reference {reference} {why}"
            continue
        others = group[group["complete"] & (group.index != base.index[0])]
        compared = statistics.compare_with(
            per_seed(outcomes, base["cell_hash"].iloc[0], "test_top1"),
            {index: per_seed(outcomes, cell, "test_top1") for index, cell in others["cell_hash"].items()},
        )
        names = ["difference", "p", "p_holm", "shared"]
        table.loc[compared.index, REFERENCE_COLUMNS] = compared[names].to_numpy()
    return table


def _reference_text(row: pd.Series, reference: str) -> str:
    if row.get("is_reference", False):
        return "reference"
    if pd.isna(row["reference_difference"]):
        return "-"
    p = "n/a (one seed)" if pd.isna(row["reference_p_holm"]) else f"{row['reference_p_holm']:.3g}"
    return f"Δ {row['reference_difference']:+.2f}, p={p}"


def summary_table(group: pd.DataFrame, outcomes: pd.DataFrame, reference: str, cpu: bool) -> TextTable:
    """One block's selected cells (`group`) as a TextTable; its caption says what is bold and why."""
    note = group["reference_note"].iloc[0]
    bold = set()
    for column, shown in enumerate(SUMMARY, start=1):
        marked = _bold(group, shown, outcomes, cpu)
        bold |= {(row, column) for row, h in enumerate(group["cell_hash"]) if h in marked}
    headers = ["strategy"] + [
        (f"vs {reference} (Δ test top-1, Holm p)" if shown.name == "reference" else shown.header)
        + {"higher": " ↑", "lower": " ↓"}.get(shown.better, "")
        for shown in SUMMARY
    ]
    rows = [
        [row["label"], *(_text(row, shown, reference) for shown in SUMMARY)] for _, row in group.iterrows()
    ]
    caption = (
        "mean ± sample std [bootstrap 95% CI] over seeds; times median [min–max]; bold: best and every strategy "
        "not significantly worse (paired t-test, Holm, α = 0.05)" + (f"; {note}" if note else "")
    )
    return TextTable(block_title(group.iloc[0]), headers, rows, bold, caption)


def block_title(row: pd.Series) -> str:
    size = row.get("train_size", "")
    libraries = row.get("libraries", "")  # only where the results hold several versions
    title = f"{row['dataset']} · {row['model']}" + (f" · train size {size}" if size else "")
    return title + (f" · {libraries}" if libraries else "")


OTHER_HEADERS = [
    "strategy",
    "why not compared",
    "seeds ok",
    "val top-1 %",
    "test top-1 %",
    "trainable params",
]


def other_table(group: pd.DataFrame) -> TextTable:
    """A block's cells that are not selected (search points, configurations with a worse validation):
    shown for reference, never compared, ranked, plotted against the selected ones, or bold."""
    rows = [
        [
            row["label"],
            row["role"],
            f"{row['seeds']}/{row['asked']}",
            interval_text(row["best_val_top1"], row["best_val_top1_std"], np.nan, np.nan, 2),
            interval_text(row["test_top1"], row["test_top1_std"], np.nan, np.nan, 2),
            f"{row['trainable_params']:,.0f}" if pd.notna(row["trainable_params"]) else "-",
        ]
        for _, row in group.iterrows()
    ]
    caption = "not chosen by validation: never compared with the table above, never bold"
    return TextTable(f"Not selected: {block_title(group.iloc[0])}", OTHER_HEADERS, rows, caption=caption)


def rank_table(table: pd.DataFrame) -> TextTable | None:
    """Mean rank of test top-1 over blocks (1 = best), with Friedman's test when there are three strategies
    or more; None with fewer than two blocks. Only complete selected cells, strategies present in every block."""
    compared = table[table["complete"]]
    scores = compared.pivot_table(index=BLOCK, columns="strategy", values="test_top1", aggfunc="first")
    if len(scores) < 2:
        return None
    ranks = statistics.mean_ranks(scores)
    complete = scores[ranks.index]
    note = f"ranks of mean test top-1 over {len(scores)} dataset·model blocks; 1 = best"
    if len(ranks) >= 3:
        p = stats.friedmanchisquare(*(complete[name] for name in ranks.index)).pvalue
        note += f"; Friedman test p = {p:.3g}"
    if len(scores) >= 5:
        note += "; no critical-difference diagram (autorank is not a dependency of this benchmark)"
    rows = [[name, f"{rank:.2f}"] for name, rank in ranks.items()]
    best = {(row, 1) for row, rank in enumerate(ranks) if math.isclose(rank, ranks.min())}
    return TextTable("Mean rank across datasets and models", ["strategy", "mean rank ↓"], rows, best, note)


# --- a tuned sweep (`run --search`): the choice on validation, then the seeds ----------------------------

TUNED_STAGES = ("search", "final")


def _tuned_group(rows: pd.DataFrame) -> dict:
    """One strategy's search (one dataset, model and search space): the point chosen by validation top-1,
    the same rule as `run` (cells.chosen_point), and the test top-1 of that point over every seed."""
    first = rows.iloc[0]
    points = selection.grid(json.loads(first["search_space"]))
    ok = rows[rows["status"] == Status.OK].drop_duplicates("config_hash", keep="last")
    searched = ok[ok["stage"] == "search"]
    answered = rows[(rows["stage"] == "search") & rows["status"].isin(selection.DONE)]
    done = answered["search_point"].nunique()
    chosen = chosen_point(rows)
    finals = ok[ok["search_point"] == chosen]
    val = searched.loc[searched["search_point"] == chosen, "best_val_top1"]
    test = finals.set_index("seed")["test_top1"].astype(float) * 100
    low, high = statistics.bootstrap_interval(test)
    return {
        "dataset": first["dataset"],
        "model": first["model"],
        "libraries": first["libraries"],
        "strategy": first["strategy"],
        "chosen": _point_text(chosen) if chosen else "-",
        "points": f"{done}/{len(points)}",
        "complete": done == len(points),
        "val_top1": float(val.iloc[0]) * 100 if len(val) else np.nan,
        "seeds": len(finals),
        "test_values": test,
        "test_top1": test.mean() if len(test) else np.nan,
        "test_top1_std": test.std(ddof=1) if len(test) > 1 else np.nan,
        "test_top1_ci_low": low,
        "test_top1_ci_high": high,
    }


def _point_text(point: str) -> str:
    return ", ".join(f"{key}={short(value)}" for key, value in json.loads(point).items())


def _current(runs: pd.DataFrame) -> pd.DataFrame:
    """The rows a tuned sweep's choice may use: not those of an older code version of their strategy (the
    summary lists those under "Not selected"), with `libraries` (identity.separate's; "" where the results
    hold one library identity) so that no choice and no mean mixes torch, timm or peft versions."""
    runs = identity.separate(runs)  # idempotent: the report has separated them already
    return runs[~runs["older_code"]] if len(runs) else runs.assign(libraries="")


def tuned(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per strategy of a tuned sweep (per dataset, model, library identity and search space); empty
    without one."""
    if "stage" not in runs:
        return pd.DataFrame()
    mine = _current(runs[runs["stage"].isin(TUNED_STAGES) & runs["search_space"].notna()])
    if mine.empty:
        return pd.DataFrame()
    keys = ["dataset", "model", "libraries", "strategy", "search_space"]
    table = pd.DataFrame([_tuned_group(rows) for _, rows in mine.groupby(keys, sort=False)])
    # A fixed order, whatever order the runs finished in (shards, resumes).
    return table.sort_values(["dataset", "model", "libraries", "strategy"], ignore_index=True, kind="stable")


TUNED_HEADERS = ["strategy", "chosen", "points searched", "val top-1 % ↑", "seeds", "test top-1 % ↑"]


def tuned_tables(table: pd.DataFrame) -> list[TextTable]:
    """The final table per dataset and model. Bold: the best validation top-1 at the choice (one seed each,
    like with like), and in test top-1 the best and every strategy not significantly worse (as the summary)."""
    tables = []
    for (dataset, model, libraries), group in table.groupby(["dataset", "model", "libraries"], sort=False):
        rows, bold = [], set()
        best = group["val_top1"].max()
        not_worse = statistics.not_worse(dict(enumerate(group["test_values"])))
        for position, (_, row) in enumerate(group.iterrows()):
            test = interval_text(
                row["test_top1"], row["test_top1_std"], row["test_top1_ci_low"], row["test_top1_ci_high"], 2
            )
            points = row["points"] + ("" if row["complete"] else " (incomplete)")
            val = "-" if pd.isna(row["val_top1"]) else f"{row['val_top1']:.2f}"
            rows.append([row["strategy"], row["chosen"], points, val, str(row["seeds"]), test])
            bold |= {(position, 3)} if row["val_top1"] == best else set()
            bold |= {(position, 5)} if position in not_worse else set()
        caption = (
            "hyper-parameters chosen by validation top-1 with the first seed; test top-1 mean ± sample std "
            "[bootstrap 95% CI] over the final seeds; bold: best validation at the choice; in test top-1, best "
            "and every strategy not significantly worse (paired t-test, Holm, α = 0.05)"
        )
        title = f"Tuned: {dataset} · {model}" + (f" · {libraries}" if libraries else "")
        tables.append(TextTable(title, TUNED_HEADERS, rows, bold, caption))
    return tables


def tuned_latex(tables: list[TextTable]) -> str:
    """One booktabs tabular; with several datasets or models, a column says which."""
    if len(tables) == 1:
        return tables[0].latex()
    rows = [[table.title.removeprefix("Tuned: "), *row] for table in tables for row in table.rows]
    bold, offset = set(), 0
    for table in tables:
        bold |= {(row + offset, column + 1) for row, column in table.bold}
        offset += len(table.rows)
    return TextTable("", ["dataset · model", *TUNED_HEADERS], rows, bold).latex()


def search_points(runs: pd.DataFrame) -> pd.DataFrame:
    """Every successful search row of current code as (dataset, model, libraries, strategy, key, value,
    val_top1 %, chosen) per axis."""
    if "stage" not in runs:
        return pd.DataFrame()
    rows = _current(runs[(runs["stage"] == "search") & (runs["status"] == Status.OK)])
    rows = rows.drop_duplicates(["config_hash", "libraries"])
    return pd.DataFrame(
        [
            {
                "dataset": row["dataset"],
                "model": row["model"],
                "libraries": row["libraries"],
                "strategy": row["strategy"],
                "key": key,
                "value": value,
                "val_top1": float(row["best_val_top1"]) * 100,
                "chosen": bool(row["chosen"]) if pd.notna(row["chosen"]) else False,
            }
            for _, row in rows.iterrows()
            for key, value in json.loads(row["search_point"]).items()
        ]
    )
