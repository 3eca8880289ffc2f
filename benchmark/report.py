"""Comparison tables and plots from every run in a results folder.

Aggregation is per cell (dataset, model, strategy, options and hyper-parameters; all seeds together).
Only successful runs enter the means; failed, diverged and cancelled runs are counted apart. Which way
each metric is better comes from its declaration in `benchmark/columns.py`.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console

import strategies
from benchmark import columns, search, store
from benchmark.errors import UsageError
from benchmark.tables import TextTable

MiB = 2**20
FAILED_STATUSES = ("failed", "diverged", "cancelled")
# Every run column with a direction is aggregated (mean and sample std over seeds), and total_params.
AGGREGATED = [column.name for column in columns.RUNS if column.better] + ["total_params"]
PERCENT = ["test_top1", "test_top5", "best_val_top1", "test_macro_f1"]  # fractions shown as percent


@dataclasses.dataclass(frozen=True)
class Shown:
    """A summary column: the aggregated column it shows, its header and format."""

    name: str
    header: str
    fmt: str
    source: str = ""  # the run column whose direction it takes ("" for itself; None-direction columns)

    @property
    def better(self) -> str | None:
        name = self.source or self.name
        return columns.column("runs", name).better if name in {c.name for c in columns.RUNS} else None


SUMMARY = [
    Shown("seeds", "seeds", "{:.0f}"),
    Shown("test_top1", "test top-1 %", "{:.2f}"),
    Shown("best_val_top1", "val top-1 %", "{:.2f}"),
    Shown("test_top5", "test top-5 %", "{:.2f}"),
    Shown("trainable_params", "trainable params", "{:,.0f}"),
    Shown("trainable_percent", "trainable %", "{:.3f}", source="trainable_fraction"),
    Shown("train_seconds", "train s", "{:,.2f}"),
    Shown("train_images_per_second", "train img/s", "{:,.0f}"),
    Shown("peak_memory_mib", "peak memory MiB", "{:,.0f}", source="peak_memory_bytes"),
    Shown("not_ok", "failed/diverged/cancelled", "{}"),
]
# Test accuracies are marked on the cell with the best validation top-1: selection never looks at test.
SELECTED_BY_VALIDATION = {"test_top1", "test_top5"}
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


def _label(row: pd.Series, varying: list[str]) -> str:
    options = json.loads(row["strategy_options"]) if row["strategy_options"] else {}
    registered = row["strategy"] in strategies.names()  # results may come from strategies since removed
    defaults = vars(strategies.get(row["strategy"]).Options()) if registered else {}
    changed = [
        f"{key}={value}"
        for key, value in options.items()
        if key in defaults and list(np.atleast_1d(defaults[key])) != list(np.atleast_1d(value))
    ]
    changed += [f"{key}={_short(row[key])}" for key in varying]
    return row["strategy"] + (f" ({', '.join(changed)})" if changed else "")


def _short(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _cell(group: pd.DataFrame) -> dict:
    """One cell's seeds aggregated: means and sample standard deviations of successful runs."""
    first, ok = group.iloc[0], group[group["status"] == "ok"]
    cell = {
        key: first[key]
        for key in ("dataset", "model", "strategy", "strategy_options", "cell_hash", *HYPER_PARAMETERS)
        if key in group
    }
    counts = group["status"].value_counts()
    cell["seeds"] = len(ok)
    cell["not_ok"] = "/".join(str(int(counts.get(status, 0))) for status in FAILED_STATUSES)
    cell["failed_runs"] = int(group["status"].isin(FAILED_STATUSES).sum())
    for column in AGGREGATED:
        values = ok[column].astype(float) if column in ok and len(ok) else pd.Series(dtype=float)
        cell[column] = values.mean() if len(values) else np.nan
        cell[column + "_std"] = values.std(ddof=1) if len(values) > 1 else np.nan
    return cell


def aggregate(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per cell: seeds, means and standard deviations over successful runs, failure counts."""
    table = pd.DataFrame([_cell(group) for _, group in runs.groupby("cell_hash", sort=False)])
    for column in PERCENT:
        table[column] = table[column] * 100
        table[column + "_std"] = table[column + "_std"] * 100
    table["trainable_percent"] = 100 * table["trainable_params"] / table["total_params"]
    table["peak_memory_mib"] = table["peak_memory_bytes"] / MiB
    table["label"] = _labels(table)
    return table.sort_values(["dataset", "model", "trainable_params", "label"], ignore_index=True)


def _labels(table: pd.DataFrame) -> list[str]:
    """Strategy names, plus whatever distinguishes cells that share one within a dataset and model."""
    labels = []
    for _, row in table.iterrows():
        peers = table[
            (table["dataset"] == row["dataset"])
            & (table["model"] == row["model"])
            & (table["strategy"] == row["strategy"])
            & (table["strategy_options"] == row["strategy_options"])
        ]
        varying = [key for key in HYPER_PARAMETERS if key in peers and peers[key].astype(str).nunique() > 1]
        labels.append(_label(row, varying))
    return labels


def _text(row: pd.Series, shown: Shown) -> str:
    value = row[shown.name]
    if isinstance(value, str):
        return value
    if pd.isna(value):
        return "-"
    std = row.get(shown.name + "_std", np.nan)
    if shown.name in PERCENT and pd.notna(std):
        return f"{value:.2f} ± {std:.2f}"
    return shown.fmt.format(value)


def _best_rows(group: pd.DataFrame, shown: Shown) -> set[int]:
    """Positions of the rows to mark in this column."""
    column = "best_val_top1" if shown.name in SELECTED_BY_VALIDATION else shown.name
    if shown.better is None or group[column].isna().all():
        return set()
    best = group[column].max() if shown.better == "higher" else group[column].min()
    return {position for position, value in enumerate(group[column]) if value == best}


def summary_tables(table: pd.DataFrame) -> list[TextTable]:
    tables = []
    for (dataset, model), group in table.groupby(["dataset", "model"], sort=False):
        bold = {(row, column + 1) for column, shown in enumerate(SUMMARY) for row in _best_rows(group, shown)}
        headers = ["strategy"] + [
            shown.header + {"higher": " ↑", "lower": " ↓"}.get(shown.better or "", "") for shown in SUMMARY
        ]
        rows = [[row["label"], *(_text(row, shown) for shown in SUMMARY)] for _, row in group.iterrows()]
        tables.append(
            TextTable(
                f"{dataset} · {model}",
                headers,
                rows,
                bold,
                "↑ higher is better, ↓ lower is better; best in bold",
            )
        )
    return tables


def _context(runs: pd.DataFrame, dataset: str, model: str) -> str:
    """What the numbers of one table were measured on: data, its checksum, device, precision, TF32."""
    mine = runs[(runs["dataset"] == dataset) & (runs["model"] == model)]

    def values(column: str) -> str:
        return ", ".join(sorted({str(value) for value in mine[column].dropna()})) or "n/a"

    return (
        f"Data: {values('data_source')} (verified against official checksums: {values('data_verified')}). "
        f"Device: {values('device_name')}; precision {values('precision')}; TF32 {values('tf32')}; "
        f"weights {values('weights')}; torch {values('torch_version')}."
    )


def markdown(table: pd.DataFrame, runs: pd.DataFrame) -> str:
    parts = [
        "# Results\n",
        "Mean ± sample standard deviation over seeds of successful runs; every test number is of each run's "
        "validation-selected model. ↑ higher is better, ↓ lower is better. In each cost column the best value "
        "is in **bold**; in the test-accuracy columns the bold cell is the one with the best validation top-1 "
        "(selection never looks at test). Failed runs are counted, never averaged in.\n",
    ]
    for text_table in summary_tables(table):
        dataset, model = text_table.title.split(" · ")
        parts += [f"\n## {text_table.title}\n", _context(runs, dataset, model) + "\n", text_table.markdown()]
    return "\n".join(parts) + "\n"


# --- a tuned sweep (`run --search`): the choice on validation, then the seeds ----------------------------

TUNED_STAGES = ("search", "final")


def _tuned_group(rows: pd.DataFrame) -> dict:
    """One strategy's search (one dataset, model and search space): the point chosen by validation top-1,
    the same rule as `run` (search.choose), and the test top-1 of that point over every seed."""
    first = rows.iloc[0]
    points = search.grid(json.loads(first["search_space"]))
    ok = rows[rows["status"] == "ok"].drop_duplicates("config_hash", keep="last")
    searched = ok[ok["stage"] == "search"]
    position = {json.dumps(point): index for index, point in enumerate(points)}
    candidates = [
        (float(row["best_val_top1"]), float(row["train_seconds"]), position[row["search_point"]])
        for _, row in searched.iterrows()
        if row["search_point"] in position
    ]
    answered = rows[(rows["stage"] == "search") & rows["status"].isin(search.DONE)]
    done = answered["search_point"].nunique()
    chosen = json.dumps(points[search.choose(candidates)]) if candidates else None
    finals = ok[ok["search_point"] == chosen]
    val = searched.loc[searched["search_point"] == chosen, "best_val_top1"]
    test = finals["test_top1"].astype(float) * 100
    return {
        "dataset": first["dataset"],
        "model": first["model"],
        "strategy": first["strategy"],
        "chosen": _point_text(chosen) if chosen else "-",
        "points": f"{done}/{len(points)}",
        "complete": done == len(points),
        "val_top1": float(val.iloc[0]) * 100 if len(val) else np.nan,
        "seeds": len(finals),
        "test_top1": test.mean() if len(test) else np.nan,
        "test_top1_std": test.std(ddof=1) if len(test) > 1 else np.nan,
    }


def _point_text(point: str) -> str:
    return ", ".join(f"{key}={_short(value)}" for key, value in json.loads(point).items())


def tuned(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per strategy of a tuned sweep (per dataset, model and search space); empty without one."""
    if "stage" not in runs:
        return pd.DataFrame()
    mine = runs[runs["stage"].isin(TUNED_STAGES) & runs["search_space"].notna()]
    if mine.empty:
        return pd.DataFrame()
    keys = ["dataset", "model", "strategy", "search_space"]
    table = pd.DataFrame([_tuned_group(rows) for _, rows in mine.groupby(keys, sort=False)])
    # A fixed order, whatever order the runs finished in (shards, resumes).
    return table.sort_values(["dataset", "model", "strategy"], ignore_index=True, kind="stable")


TUNED_HEADERS = ["strategy", "chosen", "points searched", "val top-1 % ↑", "seeds", "test top-1 % ↑"]


def tuned_tables(table: pd.DataFrame) -> list[TextTable]:
    """The final table per dataset and model. Bold: the best validation top-1, and the test top-1 of that
    row (chosen by validation, never by test)."""
    tables = []
    for (dataset, model), group in table.groupby(["dataset", "model"], sort=False):
        rows, bold = [], set()
        best = group["val_top1"].max()
        for position, (_, row) in enumerate(group.iterrows()):
            test = "-" if pd.isna(row["test_top1"]) else f"{row['test_top1']:.2f}"
            test += "" if pd.isna(row["test_top1_std"]) else f" ± {row['test_top1_std']:.2f}"
            points = row["points"] + ("" if row["complete"] else " (incomplete)")
            val = "-" if pd.isna(row["val_top1"]) else f"{row['val_top1']:.2f}"
            rows.append([row["strategy"], row["chosen"], points, val, str(row["seeds"]), test])
            if row["val_top1"] == best:
                bold |= {(position, 3), (position, 5)}
        caption = (
            "hyper-parameters chosen by validation top-1 with the first seed; test top-1 mean ± sample std "
            "over the final seeds; best by validation in bold"
        )
        tables.append(TextTable(f"Tuned: {dataset} · {model}", TUNED_HEADERS, rows, bold, caption))
    return tables


def tuned_latex(tables: list[TextTable]) -> str:
    """summary.tex: one booktabs tabular; with several datasets or models, a column says which."""
    if len(tables) == 1:
        return tables[0].latex()
    rows = [[table.title.removeprefix("Tuned: "), *row] for table in tables for row in table.rows]
    bold, offset = set(), 0
    for table in tables:
        bold |= {(row + offset, column + 1) for row, column in table.bold}
        offset += len(table.rows)
    return TextTable("", ["dataset · model", *TUNED_HEADERS], rows, bold).latex()


def tuned_markdown(tables: list[TextTable]) -> str:
    parts = [
        "\n# Tuned sweep (`run --search`)\n",
        "Per strategy, the grid ran with the first seed; the point with the best validation top-1 (ties: the "
        "shorter run, then the grid order) ran with every seed. Test top-1 is the mean ± sample standard "
        "deviation over those seeds; nothing was chosen by test. The same table is in `summary.tex`.\n",
    ]
    for table in tables:
        parts += [f"\n## {table.title}\n", table.markdown()]
    return "\n".join(parts) + "\n"


def search_points(runs: pd.DataFrame) -> pd.DataFrame:
    """Every successful search row as (dataset, model, strategy, key, value, val_top1 %, chosen) per axis."""
    if "stage" not in runs:
        return pd.DataFrame()
    rows = runs[(runs["stage"] == "search") & (runs["status"] == "ok")].drop_duplicates("config_hash")
    return pd.DataFrame(
        [
            {
                "dataset": row["dataset"],
                "model": row["model"],
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


SPEED = [
    ("ms_per_step", "ms/step ↓", "{:,.1f}"),
    ("images_per_second", "images/s ↑", "{:,.1f}"),
    ("step_gflops", "GFLOP/step", "{:,.2f}"),
    ("achieved_tflops", "TFLOP/s ↑", "{:,.3f}"),
    ("mfu", "MFU ↑", "{:.1%}"),
    ("peak_memory_bytes", "peak memory MiB ↓", "{:,.0f}"),
    ("trainable_params", "trainable params", "{:,.0f}"),
]


def _speed_text(row: pd.Series, column: str, fmt: str) -> str:
    value = row[column]
    if value is None or pd.isna(value):
        return "-"
    return fmt.format(value / MiB if column == "peak_memory_bytes" else value)


def speed_tables(speed: pd.DataFrame) -> list[TextTable]:
    groups = speed.groupby(["device_name", "model", "batch_size", "speed_id"], sort=False)
    return [
        TextTable(
            f"Training step · {model} · batch {batch} · {device} ({speed_id})",
            ["step"] + [header for _, header, _ in SPEED],
            [
                [row["strategy"], *(_speed_text(row, c, fmt) for c, _, fmt in SPEED)]
                for _, row in group.iterrows()
            ],
        )
        for (device, model, batch, speed_id), group in groups
    ]


def speed_markdown(speed: pd.DataFrame) -> str:
    parts = [
        "\n# Speed\n",
        "One training step per strategy on synthetic input (`python -m benchmark speed`); "
        "the bare loop is a plain forward/backward/step on the whole model.\n",
    ]
    for table in speed_tables(speed):
        parts += [f"\n## {table.title}\n", table.markdown()]
    return "\n".join(parts) + "\n"


def print_speed(speed: pd.DataFrame, console: Console) -> None:
    for table in speed_tables(speed):
        console.print(table.rich())


def _read_all(results_dir: Path, console: Console) -> dict[str, pd.DataFrame]:
    """Every table; unreadable or foreign files are named in a warning and skipped."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tables = {name: store.read(results_dir, name) for name in store.TABLES}
    for warning in caught:
        console.print(f"warning: {warning.message}", markup=False)
    return tables


def main(results_dir: Path, out: Path, dataset: str | None = None, model: str | None = None) -> int:
    console = Console(width=200) if not Console().is_terminal else Console()
    tables = _read_all(results_dir, console)
    runs, speed = tables["runs"], tables["speed"]
    if runs.empty and speed.empty:
        raise UsageError(
            f"no readable runs in {results_dir}: run 'python -m benchmark run' first, or pass --results-dir"
        )
    if not runs.empty:
        runs = _filter(runs, results_dir, dataset=dataset, model=model)
    out.mkdir(parents=True, exist_ok=True)  # only once the input is known to be good
    markdown_text, written = "", []
    if not runs.empty:
        from benchmark import efficiency, plots

        table = aggregate(runs)
        summary = table.drop(columns=["cell_hash"])
        store.write_file(out / "summary.csv", lambda file: summary.to_csv(file, index=False))
        markdown_text = markdown(table, runs)
        for text_table in summary_tables(table):
            console.print(text_table.rich())
        _print_failures(runs, console)
        written = plots.render_all(runs, table, tables["epochs"], tables["classes"], tables["confusion"], out)
        if efficiency.differs_in_train_size(runs):  # a data-efficiency sweep: accuracy against training size
            written.append(plots.save(efficiency.data_efficiency_figure(runs), out / "data_efficiency.png"))
        markdown_text += _tuned_report(runs, out, console, written)
    if not speed.empty:
        store.write_file(out / "speed.csv", lambda file: speed.to_csv(file, index=False))
        markdown_text += speed_markdown(speed)
        print_speed(speed, console)
    _write_text(out / "summary.md", markdown_text + _inspection_links(out))
    tex = "summary.tex, " if (out / "summary.tex").exists() and not runs.empty else ""
    console.print(
        f"wrote summary.md, {'summary.csv, ' if not runs.empty else ''}{tex}"
        f"{'speed.csv, ' if not speed.empty else ''}{len(written)} plots in {out}",
        markup=False,
    )
    return 0


def _write_text(path: Path, text: str) -> None:
    encoded = text.encode()
    store.write_file(path, lambda file: file.write(encoded))


INSPECTION_FIGURES = {
    "attention_rollout": "attention rollout from the class token",
    "position_similarity": "position-embedding similarity",
    "patch_filters": "patch-embedding filters (principal components)",
    "sample_predictions": "sample test predictions, most confident mistakes first",
}


def _tuned_report(runs: pd.DataFrame, out: Path, console: Console, written: list[Path]) -> str:
    """The tuned sweep's table (terminal, summary.md, summary.tex) and search plots; "" without one."""
    from benchmark import plots

    table = tuned(runs)
    if table.empty:
        return ""
    tables = tuned_tables(table)
    for text_table in tables:
        console.print(text_table.rich())
    _write_text(out / "summary.tex", tuned_latex(tables))
    written += plots.render_search(search_points(runs), out)
    return tuned_markdown(tables)


def _inspection_links(out: Path) -> str:
    """Links to the figures `python -m benchmark inspect` wrote into the report folder, if any."""
    parts = []
    for subject in sorted({path.name.split("__")[0] for path in out.glob("*__*.png")}):
        figures = [(out / f"{subject}__{name}.png", what) for name, what in INSPECTION_FIGURES.items()]
        links = [f"- [{what}]({path.name})" for path, what in figures if path.exists()]
        if links:
            parts += [f"\n### {subject}\n", *links]
    return "\n# Inspection (`python -m benchmark inspect`)\n" + "\n".join(parts) + "\n" if parts else ""


def _filter(runs: pd.DataFrame, results_dir: Path, **wanted: str | None) -> pd.DataFrame:
    for column, value in wanted.items():
        if value is None:
            continue
        if value not in set(runs[column]):
            raise UsageError(
                f"no runs with {column} '{value}' in {results_dir}; "
                f"present: {', '.join(sorted(set(runs[column])))}"
            )
        runs = runs[runs[column] == value]
    return runs


def _print_failures(runs: pd.DataFrame, console: Console) -> None:
    failed = runs[runs["status"].isin(FAILED_STATUSES)]
    if failed.empty:
        return
    table = TextTable(
        f"{len(failed)} run(s) that did not finish successfully (not in the means above)",
        ["run_id", "strategy", "seed", "status", "error"],
        [
            [row["run_id"], row["strategy"], str(row["seed"]), row["status"], str(row["error"])[:200]]
            for _, row in failed.iterrows()
        ],
    )
    console.print(table.rich())
