"""Comparison tables and plots from every run in a results folder.

Aggregation is per cell (dataset, model, strategy, options and hyper-parameters; all seeds together) and
each strategy is compared in its validation-selected cell (`benchmark/report/cells.py`). Only successful runs enter
the means; failed, diverged and cancelled runs are counted, and a cell missing any is never compared. The
tables are built in `benchmark/report/tables.py`, the statistics in `benchmark/report/statistics.py`.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd
from rich.console import Console

from benchmark.errors import UsageError
from benchmark.report import cells, data_efficiency, plots, search_figure, tables
from benchmark.report.text_table import TextTable
from benchmark.results import identity, store

MiB = 2**20
FAILED_STATUSES = cells.FAILED_STATUSES
# Re-exported: the tests and callers read these from the report.
aggregate, tuned, tuned_tables, search_points = (
    cells.aggregate,
    tables.tuned,
    tables.tuned_tables,
    tables.search_points,
)
DEFAULT_REFERENCE = "full"  # the paired comparisons' reference strategy (`report --reference NAME`)


def _context(runs: pd.DataFrame, block: tuple) -> str:
    """What the numbers of one table were measured on: data, its checksum, device, precision, TF32, and what
    peak memory means there."""
    mine = cells.seed_outcomes(runs)
    mine = mine[(mine[cells.BLOCK] == pd.Series(block, index=cells.BLOCK)).all(axis=1)]

    def values(column: str) -> str:
        return ", ".join(sorted({str(value) for value in mine[column].dropna()})) or "n/a"

    memory = (
        " Peak memory on CPU is the whole process's resident-set high-water mark (`memory_kind` "
        "cpu_process_resident_peak, or cpu_process_lifetime_peak where it could not be reset), which depends on "
        "what ran before in the same process: shown, never bold."
        if _on_cpu(mine)
        else ""
    )
    return (
        f"Data: {values('data_source')} (verified against official checksums: {values('data_verified')}). "
        f"Device: {values('device_name')}; precision {values('precision')}; TF32 {values('tf32')}; "
        f"weights {values('weights')}; torch {values('torch_version')}, timm {values('timm_version')}, "
        f"peft {values('peft_version')}; code version {values('code_version')}.{memory}"
    )


def _on_cpu(rows: pd.DataFrame) -> bool:
    """Some run of these was measured on the CPU (device type cpu), where peak memory is an RSS peak."""
    return bool(rows["device"].fillna("").astype(str).str.startswith("cpu").any())


BOLD_RULE = (
    "Each strategy is shown once per backbone weights (pretrained, random initialisation), in its configuration "
    "selected by validation top-1 (a tuned sweep's chosen "
    "point; else the configuration with the best mean validation top-1 over the seeds they share); search "
    "points and other configurations are listed apart and never compared. Numbers are mean ± sample standard "
    "deviation [95% bootstrap interval of the mean: percentile method, 9,999 resamples, fixed seed] over "
    "seeds; wall-clock costs are the median [min–max]. A strategy whose seeds did not all succeed shows what "
    "became of them (e.g. `2/3 diverged`) instead of its survivors' mean, and is not compared, plotted, "
    "ranked or bold. *vs reference*: the mean paired difference in test top-1 with the reference strategy "
    "over their shared seeds (the same seed gives both the same data order) and the p-value of a paired "
    "t-test, Holm-adjusted over the table's strategies. **Bold**: in an accuracy column, the best mean and "
    "every strategy not significantly worse than it (a paired t-test against the best, Holm-adjusted over the "
    "strategies compared with it, p ≥ 0.05 or a higher mean; with one seed, the best only); for parameter "
    "counts the smallest; for time and throughput the best median and every strategy whose [min–max] "
    "overlaps its range (never with one reading); peak memory only on GPU. PPT is V-PETL Bench's "
    "accuracy × exp(−log10(P/10⁷ + 1)), P the trainable parameters outside the head. ↑ higher is better, "
    "↓ lower is better; every test number is of each run's validation-selected model.\n"
)


def block_tables(
    table: pd.DataFrame, runs: pd.DataFrame, reference: str
) -> list[tuple[tuple, TextTable, TextTable | None]]:
    """Per block: its key, the summary of its selected cells, and the table of the others (or None)."""
    outcomes = cells.seed_outcomes(runs)
    result = []
    for block, group in table.groupby(cells.BLOCK, sort=False):
        cpu = _on_cpu(outcomes[outcomes["cell_hash"].isin(group["cell_hash"])])
        summary = tables.summary_table(group[group["selected"]], outcomes, reference, cpu)
        others = group[~group["selected"]]
        result.append((block, summary, tables.other_table(others) if len(others) else None))
    return result


def markdown(blocks: list, runs: pd.DataFrame, ranks: TextTable | None) -> str:
    parts = ["# Results\n", BOLD_RULE]
    for block, summary, others in blocks:
        parts += [f"\n## {summary.title}\n", _context(runs, block) + "\n", summary.markdown()]
        parts += ["", f"_{summary.caption}_\n"]
        if others is not None:
            parts += [f"\n### {others.title}\n", others.markdown(), "", f"_{others.caption}_\n"]
    if ranks is not None:
        parts += [f"\n## {ranks.title}\n", ranks.markdown(), "", f"_{ranks.caption}_\n"]
    return "\n".join(parts) + "\n"


def latex(blocks: list, ranks: TextTable | None, tuned_tex: str) -> str:
    """summary.tex: each table as a booktabs tabular under a comment naming it."""
    parts = [f"% {summary.title}\n{summary.latex()}" for _, summary, _ in blocks]
    parts += [f"% {ranks.title}\n{ranks.latex()}"] if ranks is not None else []
    parts += [f"% Tuned sweep\n{tuned_tex}"] if tuned_tex else []
    return "\n".join(parts)


def tuned_markdown(text_tables: list[TextTable]) -> str:
    parts = [
        "\n# Tuned sweep (`run --search`)\n",
        "Per strategy, the grid ran with the first seed; the point with the best validation top-1 (ties: fewer "
        "trainable parameters, then the grid order; never wall-clock time) "
        "ran with every seed. Test top-1 is the mean ± sample standard "
        "deviation [95% bootstrap interval] over those seeds; nothing was chosen by test. The same table is in "
        "`summary.tex`.\n",
    ]
    for table in text_tables:
        parts += [f"\n## {table.title}\n", table.markdown()]
    return "\n".join(parts) + "\n"


SPEED = [
    ("ms_per_step", "ms/step ↓", "{:,.1f}"),
    ("images_per_second", "images/s ↑", "{:,.1f}"),
    ("step_gflops", "GFLOP/step", "{:,.2f}"),
    ("achieved_tflops", "TFLOP/s ↑", "{:,.3f}"),
    ("mfu", "MFU ↑", "{:.1%}"),
    ("peak_memory_bytes", "peak memory MiB ↓", "{:,.0f}"),
    ("trainable_params", "trainable params", "{:,.0f}"),
    ("inference_ms", "inference ms ↓", "{:,.1f}"),
    ("merged", "merged", "{}"),
    ("merged_inference_ms", "merged inference ms ↓", "{:,.1f}"),
]


def _speed_text(row: pd.Series, column: str, fmt: str) -> str:
    value = row.get(column)  # older speed files lack the inference columns
    if value is None or pd.isna(value):
        return "-"
    if column == "merged":
        return "yes" if value else "no"
    return fmt.format(value / MiB if column == "peak_memory_bytes" else value)


# Step time and peak memory relative to these strategies' rows of the same `speed` call (peft's own method
# comparison quotes its methods against LoRA; full fine-tuning is the cost every method tries to avoid).
RELATIVE_TO = ("lora", "full")
RELATIVE = [("ms_per_step", "time"), ("peak_memory_bytes", "memory")]


def _relative_texts(row: pd.Series, group: pd.DataFrame) -> list[str]:
    """`row`'s step time and peak memory as multiples of lora's and full's in its group ("-" if absent)."""
    texts = []
    for column, _ in RELATIVE:
        for base in RELATIVE_TO:
            mine = group[(group["strategy"] == base) & (group["kind"] == "strategy")][column]
            texts.append(f"{row[column] / mine.iloc[0]:.2f}x" if len(mine) and mine.iloc[0] else "-")
    return texts


def speed_tables(speed: pd.DataFrame) -> list[TextTable]:
    groups = speed.groupby(["device_name", "model", "batch_size", "speed_id"], sort=False)
    relative = [f"{what} ÷ {base}" for _, what in RELATIVE for base in RELATIVE_TO]
    return [
        TextTable(
            f"Training step · {model} · batch {batch} · {device} ({speed_id})",
            ["step"] + [header for _, header, _ in SPEED] + relative,
            [
                [
                    row["strategy"],
                    *(_speed_text(row, c, fmt) for c, _, fmt in SPEED),
                    *_relative_texts(row, group),
                ]
                for _, row in group.iterrows()
            ],
        )
        for (device, model, batch, speed_id), group in groups
    ]


def speed_markdown(speed: pd.DataFrame) -> str:
    parts = [
        "\n# Speed\n",
        "One training step per strategy on synthetic input (`python -m benchmark speed`); "
        "the bare loop is a plain forward/backward/step on the whole model; *time ÷ lora* and the like are "
        "multiples of that strategy's step time or peak memory in the same call (on CPU peak memory is the "
        "process's resident high-water mark, so only the GPU's ratios compare memory). *inference ms* is a "
        "no-grad forward of the trained model in eval mode; *merged* says whether the strategy folded its "
        "additions into plain weights, whose forward is *merged inference ms*.\n",
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


def main(
    results_dir: Path,
    out: Path,
    dataset: str | None = None,
    model: str | None = None,
    reference: str | None = None,
) -> int:
    """The report of a results folder into `out`; `reference`: the strategy every other is compared with
    (default `full`; a name given that is not in the results is a UsageError)."""
    console = Console(width=200) if not Console().is_terminal else Console()
    read = _read_all(results_dir, console)
    runs, speed = read["runs"], read["speed"]
    if runs.empty and speed.empty:
        raise UsageError(
            f"no readable runs in {results_dir}: run 'python -m benchmark run' first, or pass --results-dir"
        )
    if not runs.empty:
        runs = identity.separate(runs)  # every table and plot below sees the same cells
        runs = _filter(runs, results_dir, dataset=dataset, model=model)
        _check_reference(runs, reference, results_dir)
    out.mkdir(parents=True, exist_ok=True)  # only once the input is known to be good
    markdown_text, written = "", []
    if not runs.empty:
        markdown_text, written = _runs_report(runs, read, out, console, reference or DEFAULT_REFERENCE)
    if not speed.empty:
        store.write_file(out / "speed.csv", lambda file: speed.to_csv(file, index=False))
        markdown_text += speed_markdown(speed)
        print_speed(speed, console)
    _write_text(out / "summary.md", markdown_text + _inspection_links(out))
    files = "summary.md, summary.csv, summary.tex, " if not runs.empty else "summary.md, "
    console.print(
        f"wrote {files}{'speed.csv, ' if not speed.empty else ''}{len(written)} plots in {out}", markup=False
    )
    return 0


def _write_text(path: Path, text: str) -> None:
    encoded = text.encode()
    store.write_file(path, lambda file: file.write(encoded))


def _check_reference(runs: pd.DataFrame, reference: str | None, results_dir: Path) -> None:
    if reference is not None and reference not in set(runs["strategy"]):
        raise UsageError(
            f"--reference {reference}: no runs of that strategy in {results_dir}; "
            f"present: {', '.join(sorted(set(runs['strategy'])))}"
        )


def _runs_report(
    runs: pd.DataFrame, read: dict, out: Path, console: Console, reference: str
) -> tuple[str, list[Path]]:
    """summary.csv, the tables (terminal, summary.md, summary.tex) and the plots of the runs."""
    table = tables.with_reference(aggregate(runs), cells.seed_outcomes(runs), reference)
    summary = table.drop(columns=["cell_hash"])
    store.write_file(out / "summary.csv", lambda file: summary.to_csv(file, index=False))
    blocks = block_tables(table, runs, reference)
    ranks = tables.rank_table(table[table["selected"]])
    for _, summary, others in blocks:
        console.print(summary.rich())
        if others is not None:
            console.print(others.rich())
    if ranks is not None:
        console.print(ranks.rich())
    _print_failures(runs, console)
    written = plots.render_all(runs, table, read["epochs"], read["classes"], read["confusion"], out)
    if data_efficiency.differs_in_train_size(runs):  # a data-efficiency sweep: accuracy against training size
        written.append(plots.save(data_efficiency.data_efficiency_figure(runs), out / "data_efficiency.png"))
    tuned_md, tuned_tex = _tuned_report(runs, out, console, written)
    _write_text(out / "summary.tex", latex(blocks, ranks, tuned_tex))
    return markdown(blocks, runs, ranks) + tuned_md, written


INSPECTION_FIGURES = {
    "attention_rollout": "attention rollout from the class token",
    "position_similarity": "position-embedding similarity",
    "patch_filters": "patch-embedding filters (principal components)",
    "sample_predictions": "sample test predictions, most confident mistakes first",
}


def _tuned_report(runs: pd.DataFrame, out: Path, console: Console, written: list[Path]) -> tuple[str, str]:
    """The tuned sweep's table (terminal; markdown and LaTeX returned) and search plots; "" without one."""
    table = tuned(runs)
    if table.empty:
        return "", ""
    text_tables = tuned_tables(table)
    for text_table in text_tables:
        console.print(text_table.rich())
    written += search_figure.render_search(search_points(runs), out)
    return tuned_markdown(text_tables), tables.tuned_latex(text_tables)


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
