"""Nothing lost: kills, interruptions, concurrent processes, failing cells and bad input."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn

import strategies
from benchmark import cli
from benchmark.data import datasets
from benchmark.kept.trained import load as load_trained
from strategies.base import Strategy
from tests.cifar_layout import write_archive, write_folder
from tests.helpers import TINY_ARGS, run_cli, start_cli, tiny_run

# `full` on the tiny ViT for LONG_EPOCHS: a second or so, long enough to be signalled in the middle.
LONG_EPOCHS = 6
LONG_CELL = [
    *tiny_run("full", epochs=LONG_EPOCHS),
]


def wait_for_checkpoint(folder: Path, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not list((folder / "results" / "checkpoints").glob("[!.]*.pt")):  # renamed into place
        assert process.poll() is None, "the run ended before its first checkpoint"
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.02)


def runs(folder: Path) -> pd.DataFrame:
    return pd.read_parquet(folder / "results" / "runs")


@pytest.mark.slow
def test_sigkill_then_rerun_resumes_and_equals_an_uninterrupted_run(tmp_path):
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    killed.mkdir(), clean.mkdir()
    process = start_cli(*LONG_CELL, cwd=killed)
    wait_for_checkpoint(killed, process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (killed / "results" / "runs").exists() or runs(killed).empty
    resumed = run_cli(*LONG_CELL, cwd=killed)
    assert resumed.returncode == 0, resumed.stderr
    assert run_cli(*LONG_CELL, cwd=clean).returncode == 0

    after_kill, uninterrupted = runs(killed), runs(clean)
    assert len(after_kill) == 1 and after_kill.loc[0, "status"] == "ok"
    assert after_kill.loc[0, "resumed_from_epoch"] >= 1, "the rerun started over instead of resuming"
    assert after_kill.loc[0, "test_top1"] == uninterrupted.loc[0, "test_top1"]
    assert after_kill.loc[0, "test_loss"] == pytest.approx(uninterrupted.loc[0, "test_loss"], rel=1e-6)
    history = pd.read_parquet(killed / "results" / "epochs").sort_values("epoch")
    reference = pd.read_parquet(clean / "results" / "epochs").sort_values("epoch")
    assert list(history["epoch"]) == list(range(1, LONG_EPOCHS + 1))
    torch.testing.assert_close(
        torch.tensor(history["val_loss"].to_numpy()),
        torch.tensor(reference["val_loss"].to_numpy()),
        rtol=1e-6,
        atol=0,
    )
    assert not list((killed / "results" / "checkpoints").glob("*.pt")), "checkpoint left after success"


@pytest.mark.slow
def test_ctrl_c_records_cancelled_and_the_rerun_finishes(tmp_path):
    process = start_cli(*LONG_CELL, cwd=tmp_path)
    wait_for_checkpoint(tmp_path, process)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    cancelled = runs(tmp_path)
    assert list(cancelled["status"]) == ["cancelled"]
    assert list((tmp_path / "results" / "checkpoints").glob("*.pt")), "the checkpoint should survive"
    rerun = run_cli(*LONG_CELL, cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert sorted(runs(tmp_path)["status"]) == ["cancelled", "ok"]


@pytest.mark.slow
def test_two_concurrent_runs_never_run_a_cell_twice(tmp_path):
    sweep = [
        *tiny_run("linear,lora,last_k", epochs=3),
        "--seeds",
        "0,1",
    ]
    first, second = start_cli(*sweep, cwd=tmp_path), start_cli(*sweep, cwd=tmp_path)
    for process in (first, second):
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr
    table = runs(tmp_path)
    assert len(table) == 6 and set(table["status"]) == {"ok"}
    assert table["config_hash"].is_unique


def test_non_finite_loss_is_recorded_as_diverged_and_the_sweep_goes_on(tmp_path):
    result = run_cli(
        *tiny_run("full,linear", epochs=2),
        "--set",
        "full.lr=1e12",
        "--set",
        "full.clip_grad_norm=0",
        cwd=tmp_path,
    )
    assert result.returncode == 1
    table = runs(tmp_path).set_index("strategy")
    assert table.loc["full", "status"] == "diverged" and "non-finite" in table.loc["full", "error"]
    assert table.loc["linear", "status"] == "ok"
    assert "1 diverged, 1 ok" in result.stderr


class _FailsInTraining(nn.Module):
    """Wraps the head; raises on the third training forward, i.e. in the middle of an epoch."""

    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        self.head, self.calls = head, 0

    def forward(self, features):
        self.calls += self.training
        if self.calls == 3:
            raise RuntimeError("boom inside the strategy")
        return self.head(features)


@pytest.fixture
def failing_strategy():
    @strategies.register
    class FailsInTraining(Strategy):
        name = "fails_in_training"
        family = "additive"
        description = "test strategy that raises during training"

        def prepare(self, model):
            model.reset_classifier(model.num_classes)
            model.head = _FailsInTraining(model.head)
            return model

    yield FailsInTraining.name
    strategies.REGISTRY.remove(FailsInTraining.name)


def test_exception_inside_a_strategy_is_a_failed_row_and_the_sweep_goes_on(tmp_path, failing_strategy):
    # In this process (the test strategy is registered here), so the results folder is absolute.
    status = cli.main(
        [*tiny_run(f"{failing_strategy},linear", epochs=2), "--results-dir", str(tmp_path / "results")]
    )
    assert status == 1
    table = runs(tmp_path).set_index("strategy")
    assert table.loc[failing_strategy, "status"] == "failed"
    assert table.loc[failing_strategy, "error"] == "RuntimeError: boom inside the strategy"
    assert table.loc["linear", "status"] == "ok"


def test_kept_weights_are_the_selected_model_and_reproduce_every_test_metric(tmp_path):
    result = run_cli(*tiny_run("lora", epochs=3), "--keep-weights", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    row = runs(tmp_path).iloc[0]
    model = load_trained(tmp_path / row["weights_file"]).model
    test = datasets.load("synthetic", tmp_path, row["val_fraction"]).test
    from benchmark.data.batches import Pipeline
    from benchmark.train.metrics import Tally

    images = Pipeline(row["img_size"], (0.5,) * 3, (0.5,) * 3, torch.device("cpu"), flip=False)(test.images)
    with torch.no_grad():
        logits = model(images)
    tally = Tally.zeros(10, torch.device("cpu"))
    tally.add(logits, test.labels)
    assert tally.top1 == row["test_top1"] and tally.top5 == row["test_top5"]
    assert tally.macro_f1() == pytest.approx(row["test_macro_f1"], abs=1e-12)
    assert tally.loss == pytest.approx(row["test_loss"], rel=1e-5)
    stored = pd.read_parquet(tmp_path / "results" / "confusion")
    pairs = pd.DataFrame({"true_index": test.labels.numpy(), "predicted_index": logits.argmax(1).numpy()})
    recomputed = pairs.value_counts().rename("count").reset_index()
    key = ["true_index", "predicted_index"]
    assert (
        recomputed.sort_values(key).to_numpy().tolist()
        == stored[[*key, "count"]].sort_values(key).to_numpy().tolist()
    )
    history = pd.read_parquet(tmp_path / "results" / "epochs")
    assert row["best_val_top1"] == history["val_top1"].max()
    assert row["best_val_epoch"] == history.loc[history["val_top1"].idxmax(), "epoch"]


def _bad(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    return run_cli(
        "run", "--strategies", "linear", *TINY_ARGS, "--epochs", "1", "--device", "cpu", *extra, cwd=tmp_path
    )


def _assert_one_line_exit_2(result: subprocess.CompletedProcess, message: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_corrupt_archive_is_bad_input(tmp_path):
    written = write_archive(tmp_path / "data", "cifar10")
    written["archive"].write_bytes(written["archive"].read_bytes()[:200])
    _assert_one_line_exit_2(
        _bad(tmp_path, "--dataset", "cifar10", "--no-pretrained", "--no-download"), "corrupt or truncated"
    )
    assert not (tmp_path / "results").exists()


def test_data_folder_without_the_expected_files_is_bad_input(tmp_path):
    written = write_folder(tmp_path / "data", "cifar100")
    (written["folder"] / "meta").unlink()
    _assert_one_line_exit_2(
        _bad(tmp_path, "--dataset", "cifar100", "--no-pretrained", "--no-download"), "lacks meta"
    )
    assert not (tmp_path / "results").exists()


def test_weights_for_another_architecture_are_bad_input(tmp_path):
    from tests.helpers import tiny_vit

    torch.save(tiny_vit(depth=3).state_dict(), tmp_path / "other.pth")
    _assert_one_line_exit_2(
        _bad(tmp_path, "--dataset", "synthetic", "--weights", "other.pth"), "another architecture"
    )
    (tmp_path / "broken.pth").write_bytes(b"\x00" * 100)
    _assert_one_line_exit_2(
        _bad(tmp_path, "--dataset", "synthetic", "--weights", "broken.pth"), "not readable"
    )
    assert not (tmp_path / "results").exists()


def test_unwritable_results_folder_is_bad_input(tmp_path):
    (tmp_path / "a_file").write_text("not a folder")
    _assert_one_line_exit_2(
        _bad(tmp_path, "--dataset", "synthetic", "--no-pretrained", "--results-dir", "a_file/results"),
        "not writable",
    )


def test_force_reruns_and_keeps_one_ok_row_per_cell(tmp_path):
    cell = [
        *tiny_run("linear", epochs=1),
    ]
    assert run_cli(*cell, cwd=tmp_path).returncode == 0
    skipped = run_cli(*cell, cwd=tmp_path)
    assert "skipping 1 cell(s) already done" in skipped.stderr and len(runs(tmp_path)) == 1
    forced = run_cli(*cell, "--force", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    table = runs(tmp_path).sort_values("started_at")
    assert sorted(table["status"]) == ["ok", "superseded"]
    newer = table[table["status"] == "ok"]["run_id"].item()
    assert table[table["status"] == "superseded"]["error"].item() == f"superseded by {newer} (--force)"


def test_failed_download_says_where_to_put_the_archive_and_leaves_nothing(tmp_path):
    # A proxy on a closed loopback port makes the real download fail at once, with or without network.
    closed = {"https_proxy": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9"}
    result = run_cli(
        "run",
        "--strategies",
        "linear",
        "--dataset",
        "cifar100",
        *TINY_ARGS,
        "--no-pretrained",
        cwd=tmp_path,
        env=closed,
    )
    _assert_one_line_exit_2(result, "put cifar-100-python.tar.gz from https://www.cs.toronto.edu/")
    assert list(tmp_path.iterdir()) == []
