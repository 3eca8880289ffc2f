"""The shared sweep of every strategy: its rows (schema, exact counts, resume), and the report made from them
(aggregates, failures apart, stray files, plots) and its TensorBoard curves. One file, so that one test worker
trains the sweep once."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from benchmark.results import store
from benchmark.results.store import SCHEMAS
from tests.counts import expected_effective, expected_trainable
from tests.helpers import SWEEP, SWEEP_STRATEGIES, run_cli, tiny_run

# Its module fixtures are computed once: every test of this file runs on one pytest-xdist worker.
pytestmark = pytest.mark.xdist_group("test_report")


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
    for name in SWEEP_STRATEGIES:
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
    from benchmark.report.plots import pareto_front

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


def test_results_written_before_and_after_a_column_was_added_read_back_whole(tmp_path, sweep_results):
    """A folder mixing an older file (without a column) and a current one keeps every column."""
    folder = tmp_path / "results" / "runs"
    folder.mkdir(parents=True)
    current = sorted((sweep_results / "runs").glob("*.parquet"))[:2]
    older = pd.read_parquet(current[0]).drop(columns=["test_macro_f1", "tf32"])
    older.to_parquet(folder / "0-older.parquet")  # sorts first, as pandas would take its schema from it
    pd.read_parquet(current[1]).to_parquet(folder / "1-newer.parquet")
    runs = store.read(tmp_path / "results", "runs")
    assert list(runs.columns) == SCHEMAS["runs"].names
    assert runs["test_macro_f1"].isna().tolist() == [True, False]
    assert runs["run_id"].tolist() == [older["run_id"].item(), pd.read_parquet(current[1])["run_id"].item()]


def test_sweep_writes_one_ok_row_per_cell_in_the_schema(sweep_results):
    runs = store.read(sweep_results, "runs")  # the whole folder, as the README says to read it
    assert len(runs) == 2 * len(SWEEP_STRATEGIES)
    assert set(runs["status"]) == {"ok"}
    assert sorted(runs.groupby("strategy")["seed"].apply(sorted).tolist()) == [[0, 1]] * len(SWEEP_STRATEGIES)
    for path in (sweep_results / "runs").glob("*.parquet"):
        assert pq.read_schema(path).remove_metadata() == SCHEMAS["runs"]
    for _, run in runs.iterrows():  # exact counts, the head counted once
        assert run["trainable_params"] == expected_trainable(run["strategy"]), run["strategy"]
        assert run["effective_params"] == expected_effective(run["strategy"]), run["strategy"]
    # The last epoch's accuracy is kept apart; it is the selected model's when the last epoch was the best.
    assert runs["test_top1_last_epoch"].notna().all()
    last_is_best = runs["best_val_epoch"] == runs["epochs_completed"]
    assert (runs.loc[last_is_best, "test_top1_last_epoch"] == runs.loc[last_is_best, "test_top1"]).all()
    full = runs[runs["strategy"] == "full"].iloc[0]
    assert full["trainable_params"] == full["total_params"]
    assert set(runs.loc[runs["strategy"] == "linear", "trunk_cached"]) == {True}
    assert (runs["weights"] == "none (random initialisation)").all()
    assert runs["data_source"].str.startswith("synthetic").all()
    epochs = pd.read_parquet(sweep_results / "epochs")
    assert len(epochs) == 2 * len(runs) and set(epochs["run_id"]) == set(runs["run_id"])
    classes = pd.read_parquet(sweep_results / "classes")
    assert len(classes) == 10 * len(runs)
    # The confusion matrix and the per-class table describe the same predictions as test_top1.
    confusion = pd.read_parquet(sweep_results / "confusion")
    for _, run in runs.iterrows():
        cells = confusion[confusion["run_id"] == run["run_id"]]
        correct = cells.loc[cells["true_index"] == cells["predicted_index"], "count"].sum()
        assert correct / cells["count"].sum() == pytest.approx(run["test_top1"])
        assert cells["count"].sum() == run["n_test"]


def test_rerun_skips_finished_cells(sweep_results):
    folder = sweep_results.parent
    before = sorted(path.name for path in (sweep_results / "runs").iterdir())
    result = run_cli(*SWEEP, cwd=folder)
    assert result.returncode == 0, result.stderr
    assert f"skipping {2 * len(SWEEP_STRATEGIES)} cell(s) already done" in result.stderr
    assert sorted(path.name for path in (sweep_results / "runs").iterdir()) == before


EPOCH_TAGS = {"train_loss": "train/loss", "val_loss": "val/loss", "val_top1": "val/top1", "lr": "train/lr"}


def read_events(folder: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder))
    events.Reload()
    return events


def hparams_of(events) -> dict:
    from tensorboard.plugins.hparams import plugin_data_pb2

    content = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    return dict(plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams)


def test_every_run_of_a_sweep_has_its_epoch_curves_and_labels_in_tensorboard(sweep_results):
    runs, epochs = store.read(sweep_results, "runs"), store.read(sweep_results, "epochs")
    assert len(runs) > 1
    for run in runs.itertuples():
        events = read_events(sweep_results / "tb" / run.run_id)
        history = epochs[epochs["run_id"] == run.run_id].sort_values("epoch")
        for column, tag in EPOCH_TAGS.items():
            logged = events.Scalars(tag)
            assert [event.step for event in logged] == list(history["epoch"]), (run.run_id, tag)
            assert [event.value for event in logged] == pytest.approx(list(history[column]), rel=1e-6)
        assert [event.value for event in events.Scalars("final/test_top1")] == pytest.approx([run.test_top1])
        card = events.Tensors("run/text_summary")[0].tensor_proto.string_val[0].decode()
        for label in (run.strategy, run.dataset, run.model, f"| seed | {run.seed} |"):
            assert str(label) in card
        hparams = hparams_of(events)  # TensorBoard's HParams tab: one line per run, by these labels
        assert (hparams["strategy"].string_value, hparams["seed"].number_value) == (run.strategy, run.seed)
