"""Comparison tables and plots from every run in a results folder.

Aggregation is per cell (dataset, model, strategy, options and hyper-parameters; all seeds together).
Only successful runs enter the means; failed, diverged and cancelled runs are counted apart.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

import strategies  # noqa: E402
from benchmark import store  # noqa: E402
from benchmark.errors import UsageError  # noqa: E402

MiB = 2**20
FAILED_STATUSES = ("failed", "diverged", "cancelled")
# Summary columns: (column, header, higher is better?, format). None: no direction, not marked.
COLUMNS = [
    ("seeds", "seeds", None, "{:.0f}"),
    ("test_top1", "test top-1 %", True, "{}"),
    ("test_top1_at_best_val", "test top-1 at best val %", True, "{:.2f}"),
    ("test_top5", "test top-5 %", True, "{:.2f}"),
    ("trainable_params", "trainable params", False, "{:,.0f}"),
    ("trainable_percent", "trainable %", False, "{:.3f}"),
    ("train_seconds", "train s", False, "{:,.2f}"),
    ("train_images_per_second", "train img/s", True, "{:,.0f}"),
    ("peak_memory_mib", "peak memory MiB", False, "{:,.0f}"),
    ("not_ok", "failed/diverged/cancelled", None, "{}"),
]


def strategy_colours(names: list[str]) -> dict[str, tuple]:
    """One colour per strategy, the same in every plot: fixed by the registry's order."""
    known = strategies.names()
    order = known + sorted(set(names) - set(known))
    palette = sns.color_palette("colorblind", n_colors=max(len(order), 10))
    return {name: palette[index % len(palette)] for index, name in enumerate(order)}


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


def aggregate(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per cell: seeds, means and standard deviations over successful runs, failure counts."""
    runs = runs.copy()
    runs["not_ok_flag"] = runs["status"].isin(FAILED_STATUSES)
    cells = []
    for _, group in runs.groupby("cell_hash", sort=False):
        first = group.iloc[0]
        ok = group[group["status"] == "ok"]
        cell = {
            key: first[key]
            for key in ("dataset", "model", "strategy", "strategy_options", "cell_hash", *HYPER_PARAMETERS)
            if key in group
        }
        cell["seeds"] = len(ok)
        counts = group["status"].value_counts()
        cell["not_ok"] = "/".join(str(int(counts.get(status, 0))) for status in FAILED_STATUSES)
        cell["failed_runs"] = int(group["not_ok_flag"].sum())
        for column in (
            "test_top1",
            "test_top1_at_best_val",
            "test_top5",
            "train_seconds",
            "train_images_per_second",
            "peak_memory_bytes",
            "trainable_params",
            "total_params",
        ):
            values = ok[column].astype(float) if column in ok and len(ok) else pd.Series(dtype=float)
            cell[column] = values.mean() if len(values) else np.nan
            cell[column + "_std"] = values.std(ddof=1) if len(values) > 1 else np.nan
        cells.append(cell)
    table = pd.DataFrame(cells)
    for column in ("test_top1", "test_top1_at_best_val", "test_top5"):
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


def _cell_text(row: pd.Series, column: str, fmt: str) -> str:
    value = row[column]
    if column == "test_top1":
        std = row["test_top1_std"]
        return f"{value:.2f} ± {std:.2f}" if pd.notna(std) else (f"{value:.2f}" if pd.notna(value) else "-")
    if isinstance(value, str):
        return value
    return fmt.format(value) if pd.notna(value) else "-"


def _best_index(table: pd.DataFrame, column: str, higher: bool | None) -> set:
    if higher is None or table[column].isna().all():
        return set()
    best = table[column].max() if higher else table[column].min()
    return set(table.index[table[column] == best])


def _header(name: str, higher: bool | None) -> str:
    return name + (" ↑" if higher else " ↓" if higher is not None else "")


def markdown(table: pd.DataFrame) -> str:
    """One table per dataset and model, best value per column in bold, arrows for the direction."""
    parts = [
        "# Results\n",
        "Mean ± sample standard deviation over seeds of successful runs. Best value per column "
        "in **bold**; ↑ higher is better, ↓ lower is better. Failed runs are counted, never averaged in.\n",
    ]
    for (dataset, model), group in table.groupby(["dataset", "model"], sort=False):
        parts.append(f"\n## {dataset} · {model}\n")
        parts.append(
            "| strategy | " + " | ".join(_header(header, higher) for _, header, higher, _ in COLUMNS) + " |"
        )
        parts.append("|---|" + "---:|" * len(COLUMNS))
        best = {column: _best_index(group, column, higher) for column, _, higher, _ in COLUMNS}
        for index, row in group.iterrows():
            cells = []
            for column, _, _, fmt in COLUMNS:
                text = _cell_text(row, column, fmt)
                cells.append(f"**{text}**" if index in best[column] else text)
            parts.append(f"| {row['label']} | " + " | ".join(cells) + " |")
    return "\n".join(parts) + "\n"


def print_terminal(table: pd.DataFrame, console: Console) -> None:
    for (dataset, model), group in table.groupby(["dataset", "model"], sort=False):
        rich_table = Table(
            title=f"{dataset} · {model}", caption="↑ higher is better, ↓ lower is better; best in bold"
        )
        rich_table.add_column("strategy")
        for _, header, higher, _ in COLUMNS:
            rich_table.add_column(_header(header, higher), justify="right")
        best = {column: _best_index(group, column, higher) for column, _, higher, _ in COLUMNS}
        for index, row in group.iterrows():
            cells = [
                (
                    f"[bold]{_cell_text(row, column, fmt)}[/bold]"
                    if index in best[column]
                    else _cell_text(row, column, fmt)
                )
                for column, _, _, fmt in COLUMNS
            ]
            rich_table.add_row(row["label"], *cells)
        console.print(rich_table)


SPEED_COLUMNS = [
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


def _speed_groups(speed: pd.DataFrame):
    return speed.groupby(["device_name", "model", "batch_size", "speed_id"], sort=False)


def speed_markdown(speed: pd.DataFrame) -> str:
    parts = [
        "\n# Speed\n",
        "One training step per strategy on synthetic input (`python -m benchmark speed`); "
        "the bare loop is a plain forward/backward/step on the whole model.\n",
    ]
    for (device, model, batch, speed_id), group in _speed_groups(speed):
        parts.append(f"\n## {model} · batch {batch} · {device} ({speed_id})\n")
        parts.append("| step | " + " | ".join(header for _, header, _ in SPEED_COLUMNS) + " |")
        parts.append("|---|" + "---:|" * len(SPEED_COLUMNS))
        for _, row in group.iterrows():
            cells = [_speed_text(row, column, fmt) for column, _, fmt in SPEED_COLUMNS]
            parts.append(f"| {row['strategy']} | " + " | ".join(cells) + " |")
    return "\n".join(parts) + "\n"


def print_speed(speed: pd.DataFrame, console: Console) -> None:
    for (device, model, batch, speed_id), group in _speed_groups(speed):
        table = Table(title=f"Training step · {model} · batch {batch} · {device} ({speed_id})")
        table.add_column("step")
        for _, header, _ in SPEED_COLUMNS:
            table.add_column(header, justify="right")
        for _, row in group.iterrows():
            table.add_row(
                row["strategy"], *[_speed_text(row, column, fmt) for column, _, fmt in SPEED_COLUMNS]
            )
        console.print(table)


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
        table = aggregate(runs)
        table.drop(columns=["cell_hash"]).to_csv(out / "summary.csv", index=False)
        markdown_text = markdown(table)
        print_terminal(table, console)
        _print_failures(runs, console)
        from benchmark import plots

        written = plots.render_all(runs, table, tables["epochs"], tables["classes"], tables["confusion"], out)
    if not speed.empty:
        speed.to_csv(out / "speed.csv", index=False)
        markdown_text += speed_markdown(speed)
        print_speed(speed, console)
    (out / "summary.md").write_text(markdown_text)
    console.print(
        f"wrote summary.md, {'summary.csv, ' if not runs.empty else ''}"
        f"{'speed.csv, ' if not speed.empty else ''}{len(written)} plots in {out}",
        markup=False,
    )
    return 0


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
    table = Table(title=f"{len(failed)} run(s) that did not finish successfully (not in the means above)")
    for column in ("run_id", "strategy", "seed", "status", "error"):
        table.add_column(column, overflow="fold")
    for _, row in failed.iterrows():
        table.add_row(
            row["run_id"], row["strategy"], str(row["seed"]), row["status"], str(row["error"])[:200]
        )
    console.print(table)
