"""`run --launcher`: a sweep shared by workers that pull cells, on Slurm (dry run here) or local processes,
with a killed worker's cell finished once and a pre-empted worker requeued from its checkpoint."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from benchmark.results import store
from benchmark.sweep import pull
from tests.helpers import TINY_ARGS, run_cli, tiny_run

LOCAL = ["--launcher", "local"]


def first_checkpoint(results: Path, done: threading.Event, timeout: float = 180) -> Path:
    deadline = time.monotonic() + timeout
    while not list((results / "checkpoints").glob("[!.]*.pt")):  # renamed into place at an epoch's end
        assert not done.is_set(), "the sweep ended before any checkpoint"
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.02)
    return next((results / "checkpoints").glob("[!.]*.pt"))


def claim_holder(results: Path, config_hash: str) -> int:
    """The process that holds the cell's claim (flock), from /proc/locks: a worker's task process."""
    inode = (results / "claims" / f"{config_hash}.lock").stat().st_ino
    for line in Path("/proc/locks").read_text().splitlines():
        fields = [field for field in line.split() if field != "->"]  # "->" marks a waiting request
        if fields[1] == "FLOCK" and int(fields[5].rsplit(":", 1)[1]) == inode:
            return int(fields[4])
    raise AssertionError(f"nobody holds the claim of {config_hash}")


def in_background(argv: list[str], cwd: Path) -> tuple[threading.Thread, dict, threading.Event]:
    """The CLI's main in a thread (the launcher waits for its local workers there)."""
    outcome, done = {}, threading.Event()

    def target() -> None:
        outcome["result"] = run_cli(*argv, cwd=cwd)
        done.set()

    thread = threading.Thread(target=target)
    thread.start()
    return thread, outcome, done


def ok_once(results: Path) -> pd.DataFrame:
    runs = store.read(results, "runs")
    assert set(runs["status"]) == {"ok"} and runs["config_hash"].is_unique, runs[["strategy", "status"]]
    return runs.set_index("config_hash")


def checkpoint_held_by_another(results: Path, not_by: int, done: threading.Event) -> tuple[str, int]:
    """A cell with a checkpoint whose claim a process other than `not_by` holds: (config hash, pid)."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and not done.is_set():
        for path in (results / "checkpoints").glob("[!.]*.pt"):
            try:
                holder = claim_holder(results, path.stem)
            except AssertionError:  # nobody holds it at this instant
                continue
            if holder != not_by:
                return path.stem, holder
        time.sleep(0.02)
    raise AssertionError("no other worker reached a checkpoint")


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/locks").exists(), reason="finds the workers to signal in /proc/locks")
def test_local_workers_finish_a_sweep_once_when_one_is_killed_and_one_preempted(tmp_path):
    """Two local workers, three cells. One worker is SIGKILLed in the middle of a cell: submitit cannot
    requeue that, and the other worker takes the cell over from its checkpoint once the kill frees its
    claim. Then the other worker is pre-empted (USR2, what Slurm sends before a time limit or pre-emption):
    submitit requeues it and it resumes its own cell. Every cell ends with exactly one row, ok."""
    argv = [*tiny_run("full,lora,bitfit", epochs=6), *LOCAL, "--workers", "2"]
    results = tmp_path / "results"
    thread, outcome, done = in_background(argv, tmp_path)
    killed = first_checkpoint(results, done).stem  # a config hash
    victim = claim_holder(results, killed)
    subprocess.run(["kill", "-KILL", str(victim)], check=True)  # in the middle of the cell
    preempted, survivor = checkpoint_held_by_another(results, victim, done)
    subprocess.run(["kill", "-USR2", str(survivor)], check=True)
    thread.join(timeout=300)
    result = outcome["result"]

    runs = ok_once(results)
    assert len(runs) == 3  # every cell once: the killed and the pre-empted attempts left no row
    assert runs.loc[killed, "resumed_from_epoch"] >= 1, "the killed cell started over"
    assert runs.loc[preempted, "resumed_from_epoch"] >= 1, "the pre-empted cell started over"
    assert "ended without finishing" in result.stderr and result.returncode == 1, result.stderr
    logs = "".join(path.read_text() for path in (results / "launcher").glob("*_log.out"))
    assert "requeued" in logs
    assert not list((results / "checkpoints").glob("*.pt"))


def test_slurm_dry_run_prints_the_job_and_writes_nothing(tmp_path):
    experiment = tmp_path / "sweep.yaml"
    experiment.write_text("launcher: slurm\nslurm_partition: gpu\nslurm_extra: {account: vision}\n")
    argv = [*tiny_run("lora,bitfit", epochs=1), "--config", str(experiment), "--workers", "8"]
    argv += ["--slurm-time", "2:00:00", "--slurm-cpus", "10", "--slurm-gpus", "1", "--dry-run", "--json"]
    result = run_cli(*argv, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    job = json.loads(result.stdout)
    assert job["executor"] == "slurm" and job["tasks"] == 8
    parameters = job["parameters"]
    assert (
        parameters["partition"] == "gpu" and parameters["time"] == 120 and parameters["cpus_per_task"] == 10
    )
    assert parameters["gpus_per_node"] == 1 and parameters["additional_parameters"] == {"account": "vision"}
    command = job["command"]  # the run as given, less the launcher's flags: a task runs the sweep
    assert command.startswith("python -m benchmark run --strategies lora,bitfit") and "--config" in command
    for flag in ("--launcher", "--workers", "--slurm", "--dry-run", "--json"):
        assert flag not in command
    sbatch = job["sbatch"]
    for line in ("#SBATCH --array=0-7%8", "#SBATCH --partition=gpu", "#SBATCH --account=vision"):
        assert line in sbatch
    assert "#SBATCH --signal=USR2@90" in sbatch and str(tmp_path / "results" / "launcher") in sbatch
    assert sorted(path.name for path in tmp_path.iterdir()) == ["sweep.yaml"]

    text = run_cli(*argv[:-1], cwd=tmp_path)  # the same, for a person
    assert text.returncode == 0 and "Would submit 8 task(s) as a Slurm job array" in text.stdout


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--launcher", "nope"], "argument --launcher: invalid choice"),
        (["--launcher", "local", "--workers", "0"], "--workers must be at least 1"),
        (["--workers", "2"], "--workers goes with --launcher"),
        (["--slurm-partition", "gpu"], "--slurm-partition goes with --launcher slurm"),
        (["--launcher", "local", "--slurm-gpus", "2"], "--slurm-gpus goes with --launcher slurm"),
        (["--launcher", "slurm", "--slurm-time", "soon"], "--slurm-time takes minutes"),
        (["--launcher", "slurm", "--slurm-extra", "account"], "--slurm-extra takes KEY=VALUE"),
        (["--launcher", "local", "--shard", "0/2"], "--shard and --launcher"),
        (["--launcher", "local", "--workers", "2", "--force"], "--force with several workers"),
        (["--launcher", "local", "--device", "cuda:1"], "gives each worker one GPU of its own"),
    ],
)
def test_bad_launcher_input_is_one_line_exit_2_and_writes_nothing(tmp_path, flags, message):
    result = run_cli(*tiny_run("linear", epochs=1), *flags, cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.startswith("error: ") and message in result.stderr
    assert result.stderr.count("\n") == 1 and not list(tmp_path.iterdir())


@pytest.mark.skipif(shutil.which("sbatch") is not None, reason="Slurm is here: this would submit a job")
def test_launcher_slurm_without_slurm_says_so_and_writes_nothing(tmp_path):
    result = run_cli(*tiny_run("linear", epochs=1), "--launcher", "slurm", cwd=tmp_path)
    assert result.returncode == 2 and "--launcher slurm needs Slurm here" in result.stderr
    assert "--dry-run shows the job" in result.stderr and not list(tmp_path.iterdir())


def test_local_dry_run_shows_one_task_per_worker_and_the_command(tmp_path):
    argv = [*tiny_run("linear", epochs=1), *LOCAL, "--workers", "3", "--dry-run", "--json"]
    job = json.loads(run_cli(*argv, cwd=tmp_path).stdout)
    assert job["executor"] == "local" and job["tasks"] == 3 and job["gpus"] == []  # --device cpu
    assert "--launcher" not in job["command"] and not list(tmp_path.iterdir())


@pytest.mark.slow
def test_a_worker_waits_for_search_points_another_worker_holds(tmp_path, monkeypatch):
    """A tuned sweep's final stage needs every search row: a worker that finds one held waits for it, and
    runs it itself when the holder lets go without a row (it died), then runs the final stage."""
    argv = ["run", "--strategies", "linear", "--dataset", "synthetic", *TINY_ARGS, "--no-pretrained"]
    argv += ["--epochs", "1", "--device", "cpu", "--seeds", "0,1", "--search", "lr=0.001,0.3"]
    plan = json.loads(run_cli(*argv, "--dry-run", "--json", cwd=tmp_path).stdout)
    held = plan[-1]["config_hash"]  # the last search point: the worker reaches it after the other
    results, released = tmp_path / "results", threading.Event()
    monkeypatch.setattr(pull, "POLL_SECONDS", 0.2)  # seconds between looks (10 s for real workers)

    def other_worker() -> None:
        with store.claim(results, held):
            while len(list((results / "runs").glob("*.parquet"))) < 1:  # the free point is done
                time.sleep(0.05)
            time.sleep(1.0)  # the worker is waiting now
        released.set()

    (results / "claims").mkdir(parents=True)
    holder = threading.Thread(target=other_worker)
    holder.start()
    result = run_cli(*argv, cwd=tmp_path, env={"BENCHMARK_LAUNCHER_WORKER": "0/2"})
    holder.join()
    assert result.returncode == 0, result.stderr
    assert "waiting for 1 search run(s) that other workers hold" in result.stderr
    runs = ok_once(results)
    assert len(runs) == 3 and held in runs.index  # 2 search points, then seed 1 of the chosen one
    assert sorted(runs["stage"]) == ["final", "search", "search"]
