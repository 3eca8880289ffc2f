"""Data-parallel runs under torchrun (gloo on the CPU) and sweeps sharded across independent jobs."""

from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd
import pytest

from tests.helpers import ROOT, TINY_ARGS, run_cli, start_cli, tiny_run

CELLS = [
    "--strategies",
    "linear,full",
    "--dataset",
    "synthetic",
    *TINY_ARGS,
    "--no-pretrained",
    "--epochs",
    "4",
    "--no-augment",
    "--device",
    "cpu",
]


@pytest.mark.slow
def test_torchrun_two_processes_match_a_single_process(tmp_path):
    env = os.environ | {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    parallel = subprocess.run(
        [*torchrun, "-m", "benchmark", "run", *CELLS, "--results-dir", "ddp"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert parallel.returncode == 0, parallel.stderr[-3000:]
    single = run_cli("run", *CELLS, "--results-dir", "single", cwd=tmp_path)
    assert single.returncode == 0, single.stderr

    ddp = pd.read_parquet(tmp_path / "ddp" / "runs").set_index("strategy").sort_index()
    one = pd.read_parquet(tmp_path / "single" / "runs").set_index("strategy").sort_index()
    assert list(ddp.index) == ["full", "linear"], "one row per cell, written once"
    assert (ddp["world_size"] == 2).all() and (one["world_size"] == 1).all()
    assert (ddp["status"] == "ok").all()
    assert ddp.loc["linear", "trunk_cached"], "the cached trunk works under DDP"
    # The same global batches in the same order: only floating-point summation order differs. Not for the
    # linear probe, whose head standardises with batch statistics: each process uses its own half-batch.
    for strategy in ["full"]:
        assert ddp.loc[strategy, "test_loss"] == pytest.approx(one.loc[strategy, "test_loss"], rel=1e-4)
        assert ddp.loc[strategy, "test_top1"] == pytest.approx(one.loc[strategy, "test_top1"], abs=0.01)
        assert ddp.loc[strategy, "n_test"] == one.loc[strategy, "n_test"]


@pytest.mark.slow
def test_two_shards_cover_a_sweep_exactly_once(tmp_path):
    sweep = [
        *tiny_run("linear,lora,last_k", epochs=1),
        "--seeds",
        "0,1",
    ]
    shards = [start_cli(*sweep, "--shard", f"{index}/2", cwd=tmp_path) for index in range(2)]
    for shard in shards:
        _, stderr = shard.communicate(timeout=300)
        assert shard.returncode == 0, stderr
        assert "3 cell(s) to run" in stderr
    runs = pd.read_parquet(tmp_path / "results" / "runs")
    assert len(runs) == 6 and runs["config_hash"].is_unique and set(runs["status"]) == {"ok"}
    assert sorted(zip(runs["strategy"], runs["seed"], strict=True)) == sorted(
        (name, seed) for name in ("linear", "lora", "last_k") for seed in (0, 1)
    )


@pytest.mark.parametrize("shard", ["2/2", "x/2", "1"])
def test_bad_shard_is_one_line_exit_2(tmp_path, shard):
    result = run_cli("run", "--dataset", "synthetic", *TINY_ARGS, "--shard", shard, cwd=tmp_path)
    assert result.returncode == 2 and "--shard takes I/N" in result.stderr


def test_shards_of_one_sweep_must_agree_on_their_number(tmp_path):
    sweep = [*tiny_run("linear,bitfit", epochs=1)]
    assert run_cli(*sweep, "--shard", "0/2", cwd=tmp_path).returncode == 0
    before = sorted(str(path) for path in (tmp_path / "results").rglob("*"))
    other = run_cli(*sweep, "--shard", "1/3", cwd=tmp_path)
    assert other.returncode == 2 and len(other.stderr.strip().splitlines()) == 1
    assert "split into 2 shards" in other.stderr and "give --shard I/2" in other.stderr
    assert sorted(str(path) for path in (tmp_path / "results").rglob("*")) == before, "it wrote files"
    assert run_cli(*sweep, "--shard", "1/2", cwd=tmp_path).returncode == 0
    runs = pd.read_parquet(tmp_path / "results" / "runs")
    assert sorted(runs["strategy"]) == ["bitfit", "linear"] and set(runs["status"]) == {"ok"}
