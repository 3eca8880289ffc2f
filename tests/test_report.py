"""The report, made from results written by real runs: aggregates, failures apart, stray files, plots."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

import strategies
from tests.helpers import SHARED_SWEEP, run_cli, tiny_run

pytestmark = SHARED_SWEEP  # its fixture is computed once, on one worker


@pytest.fixture(scope="module")
def report(sweep_results, tmp_path_factory):
    """The shared sweep, plus a diverged run and two stray files, reported."""
    folder = tmp_path_factory.mktemp("report")
    shutil.copytree(sweep_results, folder / "results")
    diverged = run_cli(
        *tiny_run("full", epochs=1),
        "--set",
        "full.lr=1e12",
        "--set",
        "full.clip_grad_norm=0",
        cwd=folder,
    )
    assert diverged.returncode == 1, diverged.stderr
    (folder / "results" / "runs" / "notes.parquet").write_bytes(b"not parquet at all")
    pd.DataFrame({"something": [1]}).to_parquet(folder / "results" / "runs" / "foreign.parquet")
    result = run_cli("report", "--results-dir", "results", "--out", "out", cwd=folder)
    return folder, result


def test_report_succeeds_and_names_stray_files(report):
    _, result = report
    assert result.returncode == 0, result.stderr
    assert "skipping results/runs/notes.parquet" in result.stdout + result.stderr
    assert "skipping results/runs/foreign.parquet" in result.stdout + result.stderr


def test_aggregates_match_the_rows(report, sweep_results):
    folder, _ = report
    summary = pd.read_csv(folder / "out" / "summary.csv")
    rows = pd.read_parquet(
        sweep_results / "runs",
        columns=["strategy", "lr", "status", "test_top1", "train_seconds", "trainable_params"],
    )
    ok = rows[rows["status"] == "ok"]
    for name in strategies.names():
        cell = summary[(summary["strategy"] == name) & (summary["seeds"] > 0)]
        assert len(cell) == 1, f"{name}: one aggregated cell expected"
        runs = ok[ok["strategy"] == name]
        assert cell["seeds"].item() == len(runs) == 2
        assert cell["test_top1"].item() == pytest.approx(100 * runs["test_top1"].mean())
        assert cell["test_top1_std"].item() == pytest.approx(100 * runs["test_top1"].std(ddof=1), nan_ok=True)
        assert cell["train_seconds"].item() == pytest.approx(runs["train_seconds"].mean())
        assert cell["trainable_params"].item() == runs["trainable_params"].iloc[0]


def test_failed_runs_are_counted_apart_never_averaged(report):
    folder, result = report
    summary = pd.read_csv(folder / "out" / "summary.csv")
    diverged = summary[summary["lr"] == 1e12]
    assert len(diverged) == 1
    assert diverged["seeds"].item() == 0 and pd.isna(diverged["test_top1"].item())
    assert diverged["not_ok"].item() == "0/1/0"  # failed/diverged/cancelled
    assert "did not finish successfully" in result.stdout


def _markdown_rows(text: str) -> dict[str, dict[str, str]]:
    """The first summary table of summary.md as {strategy label: {header: cell text}}."""
    table = text.split("\n## ")[1].split("\n\n_")[0]
    lines = [line for line in table.splitlines() if line.startswith("| ")]
    headers = [cell.strip() for cell in lines[0].strip("|").split("|")]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[1:]]
    return {row[0]: dict(zip(headers, row, strict=True)) for row in rows}


def test_markdown_compares_the_selected_cells_and_marks_the_best(report, sweep_results):
    folder, _ = report
    text = (folder / "out" / "summary.md").read_text()
    assert "## synthetic · vit_tiny_patch16_224" in text and "TF32" in text and "verified" in text
    rows = _markdown_rows(text)
    summary = pd.read_csv(folder / "out" / "summary.csv")
    selected = summary[summary["selected"]].set_index("label")
    assert set(rows) == set(selected.index)  # one row per strategy: its validation-selected configuration
    assert "full (lr=1e+12" in text.split("### Not selected")[1]  # the diverged lr is listed apart
    # Test accuracy: the best mean is bold (the full rule: tests/test_report_statistics.py).
    assert rows[selected["test_top1"].idxmax()]["test top-1 % ↑"].startswith("**")
    smallest = selected["trainable_params"].idxmin()
    assert rows[smallest]["trainable params ↓"].startswith("**")
    assert sum(cells["trainable params ↓"].startswith("**") for cells in rows.values()) == 1
    assert not any(cells["peak memory MiB ↓"].startswith("**") for cells in rows.values())  # CPU: RSS peak


def test_every_plot_is_written_and_is_a_png(report):
    folder, _ = report
    prefix = "synthetic__vit_tiny_patch16_224__"
    for name in (
        "accuracy_vs_params",
        "accuracy_vs_time",
        "costs",
        "learning_curves",
        "confusion",
        "per_class",
    ):
        path = folder / "out" / f"{prefix}{name}.png"
        assert path.stat().st_size > 10_000, f"{path.name} is missing or nearly empty"
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("setup", ["missing", "empty"])
def test_no_results_is_one_line_exit_2(tmp_path, setup):
    if setup == "empty":
        (tmp_path / "results" / "runs").mkdir(parents=True)
    result = run_cli("report", "--results-dir", "results", cwd=tmp_path)
    assert result.returncode == 2
    assert (
        len(result.stderr.strip().splitlines()) == 1
        and "run 'python -m benchmark run' first" in result.stderr
    )


def test_pareto_front_keeps_only_undominated_cells():
    from benchmark.plots import pareto_front

    points = pd.DataFrame({"cost": [1, 2, 3, 4], "value": [50, 40, 70, 65]})
    assert pareto_front(points, "cost", "value")["cost"].tolist() == [1, 3]


def test_report_draws_accuracy_against_training_size_for_a_data_efficiency_sweep(tmp_path, monkeypatch):
    from benchmark import cli
    from tests.helpers import TINY_ARGS

    monkeypatch.chdir(tmp_path)
    for size in ("50", "100"):
        argv = ["run", "--strategies", "linear", "--dataset", "digits", *TINY_ARGS, "--no-pretrained"]
        assert cli.main([*argv, "--epochs", "1", "--device", "cpu", "--train-size", size]) == 0
    assert cli.main(["report"]) == 0
    figure = tmp_path / "results" / "report" / "data_efficiency.png"
    assert figure.stat().st_size > 10_000 and figure.read_bytes()[:4] == b"\x89PNG"
