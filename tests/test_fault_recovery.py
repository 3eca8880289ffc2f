"""After a fault and a rerun, every cell has exactly one answer and nothing is left behind: a --force
rerun killed half-way, orphans of a crashed run, a diverged cell, a full disk."""

from __future__ import annotations

import errno
import io
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch

from benchmark import cli
from benchmark.cli.app import sweeps_of
from benchmark.cli.experiment import sweep_spec
from benchmark.cli.parser import build_parser
from benchmark.report import build
from benchmark.results import store
from benchmark.sweep.engine import ExecuteOptions, execute
from benchmark.sweep.plan import expand
from benchmark.sweep.progress import Progress
from benchmark.train.distributed import Dist
from tests.helpers import tiny_run

# Its module fixtures are computed once: every test of this file runs on one pytest-xdist worker.
pytestmark = pytest.mark.xdist_group("test_fault_recovery")

CELL = tiny_run("linear", epochs=1)


def run_here(argv: list[str], folder: Path, capsys, monkeypatch) -> tuple[int, str]:
    monkeypatch.chdir(folder)
    status = cli.main(argv)
    return status, capsys.readouterr().err


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A results folder with one finished cell."""
    folder = tmp_path_factory.mktemp("finished")
    assert cli.main([*CELL, "--results-dir", str(folder / "results")]) == 0
    return folder / "results"


def leftovers(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob(".tmp-*"))


def test_a_force_rerun_killed_before_marking_the_old_row_still_gives_one_answer(finished, tmp_path):
    results = shutil.copytree(finished, tmp_path / "results")
    old = pd.read_parquet(next((results / "runs").iterdir()))
    newer = old.assign(run_id="29991231T235959" + old["run_id"].item()[15:], test_top1=0.5)
    for table in ("epochs", "classes", "confusion"):  # a --force rerun writes its details, then its row
        detail = pd.read_parquet(next((results / table).iterdir())).assign(run_id=newer["run_id"].item())
        store.write_atomic(detail, results / table / f"{newer['run_id'].item()}.parquet", table)
    store.write_atomic(newer, results / "runs" / f"{newer['run_id'].item()}.parquet", "runs")  # killed here

    runs = store.read(results, "runs")
    assert sorted(runs["status"]) == ["ok", "superseded"]
    assert runs.loc[runs["status"] == "ok", "run_id"].item() == newer["run_id"].item()
    summary = build.aggregate(runs)
    assert summary["seeds"].tolist() == [1]
    assert summary["test_top1"].tolist() == [pytest.approx(100 * newer["test_top1"].item())]  # in percent


def test_orphans_of_a_crashed_run_are_not_read(finished, tmp_path):
    results = shutil.copytree(finished, tmp_path / "results")
    epochs = pd.read_parquet(next((results / "epochs").iterdir()))
    store.write_atomic(epochs.assign(run_id="crashed"), results / "epochs" / "crashed.parquet", "epochs")
    (results / "runs" / ".tmp-0123-crashed.parquet").write_bytes(b"PAR1 half a file")
    assert store.read(results, "epochs")["run_id"].nunique() == 1
    assert len(store.read(results, "runs")) == 1


def test_a_diverged_cell_is_an_answer_and_not_retrained(tmp_path, capsys, monkeypatch):
    diverging = [*tiny_run("full", epochs=1), "--lr", "1e12", "--clip-grad-norm", "0"]
    status, err = run_here(diverging, tmp_path, capsys, monkeypatch)
    assert status == 1 and "1 diverged" in err
    status, err = run_here(diverging, tmp_path, capsys, monkeypatch)
    assert status == 0 and "skipping 1 cell(s) already done" in err, err
    assert list(store.read(tmp_path / "results", "runs")["status"]) == ["diverged"]


class _FullDisk(io.FileIO):
    """A file on a full disk: opening works, writing fails as the kernel says (ENOSPC)."""

    def write(self, data) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")


def fill_disk(monkeypatch, spare: str = "") -> None:
    """Every file `store` opens for writing is on a full disk, except paths containing `spare`."""

    def full_open(path, mode="r", *args, **kwargs):
        if "w" in mode and not (spare and spare in str(path)):
            return _FullDisk(path, "w")
        return open(path, mode, *args, **kwargs)

    monkeypatch.setattr(store, "open", full_open, raising=False)  # the OS boundary, not the project


def test_a_full_disk_is_one_line_leaves_nothing_and_the_rerun_finishes(tmp_path, capsys, monkeypatch):
    fill_disk(monkeypatch, spare="experiments")  # full once the sweep has started: at the first checkpoint
    status, err = run_here(CELL, tmp_path, capsys, monkeypatch)
    assert status == 1
    lines = [line for line in err.splitlines() if line.startswith("error")]
    assert lines == [lines[0]] and lines[0].startswith("error: disk full: could not write "), err
    assert "Traceback" not in err and leftovers(tmp_path) == []
    assert not (tmp_path / "results" / "runs").exists() and not (tmp_path / "results" / "epochs").exists()
    monkeypatch.undo()
    status, err = run_here(CELL, tmp_path, capsys, monkeypatch)
    assert status == 0, err
    assert list(store.read(tmp_path / "results", "runs")["status"]) == ["ok"]


def test_a_report_on_a_full_disk_keeps_the_previous_one(finished, tmp_path, capsys, monkeypatch):
    results = shutil.copytree(finished, tmp_path / "results")
    (results / "report").mkdir()
    (results / "report" / "summary.csv").write_text("the previous good summary\n")
    fill_disk(monkeypatch)
    status, err = run_here(["report", "--results-dir", str(results)], tmp_path, capsys, monkeypatch)
    assert status == 1 and err.strip().splitlines()[-1].startswith("error: disk full"), err
    assert (results / "report" / "summary.csv").read_text() == "the previous good summary\n"
    assert leftovers(tmp_path) == []


class _ForceRunInBetween(Progress):
    """Lets another `--force` run of the whole sweep finish just as this one reaches its first cell: the race
    of two processes given --force at once, without the timing of two processes."""

    def __init__(self, argv: list[str]) -> None:
        super().__init__(lambda text: None)
        self.argv, self.done = argv, False

    def cell_started(self, number: int, cells: int, title: str, epochs: int | None) -> None:
        if not self.done:
            self.done = True
            assert cli.main(self.argv) == 0


def test_two_force_runs_at_once_train_each_cell_once(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sweep_argv = [*tiny_run("linear,bitfit", epochs=1)]
    assert cli.main(sweep_argv) == 0
    argv = [*sweep_argv, "--force"]
    spec = sweep_spec(sweeps_of(argv, build_parser().parse_args(argv))[0].experiment)
    result = execute(expand(spec), torch.device("cpu"), Dist(), _ForceRunInBetween([*sweep_argv, "--force"]),
                     ExecuteOptions(force=True))  # fmt: skip

    assert result.busy == 2 and not result.statuses, "the second --force run trained a cell again"
    runs = store.read(tmp_path / "results", "runs")
    assert sorted(runs["status"]) == ["ok", "ok", "superseded", "superseded"]
    assert runs.groupby("config_hash")["status"].apply(sorted).tolist() == [["ok", "superseded"]] * 2
