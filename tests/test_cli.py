"""The command line as a user runs it: dry-run plan, bad input, an end-to-end run, the results schema."""

from __future__ import annotations

import json
import re

import pandas as pd
import pyarrow.parquet as pq
import pytest

import strategies
from benchmark.store import SCHEMAS
from tests.conftest import ROOT, SWEEP, TINY_ARGS, run_cli


def test_dry_run_counts_vit_b16_offline_and_writes_nothing(tmp_path):
    result = run_cli(
        "run",
        "--model",
        "vit_base_patch16_224",
        "--no-pretrained",
        "--dataset",
        "cifar100",
        "--dry-run",
        "--json",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    plan = {item["strategy"]: item for item in json.loads(result.stdout)}
    assert plan["full"]["trainable_params"] == 85_875_556
    assert plan["linear"]["trainable_params"] == 76_900
    assert plan["lora"]["trainable_params"] == 371_812
    assert plan["last_k"]["trainable_params"] == 14_254_180
    assert plan["full"]["total_params"] == 85_875_556
    assert plan["lora"]["total_params"] == 85_875_556 + 294_912  # the adapters, the head counted once
    assert list(tmp_path.iterdir()) == [], "a dry run wrote files"


BAD_INPUTS = {
    "unknown strategy": (["--strategies", "lorra"], "Did you mean 'lora'"),
    "unknown dataset": (["--dataset", "cifar1000"], "unknown dataset 'cifar1000'"),
    "unknown model": (["--model", "vit_bse_patch16_224"], "Did you mean 'vit_base_patch16_224'"),
    "unknown option key": (["--set", "lora.rank=4"], "unknown option 'lora.rank'"),
    "epochs below 1": (["--epochs", "0"], "epochs must be at least 1"),
    "lr not positive": (["--lr", "0"], "lr must be positive"),
    "k beyond depth": (
        ["--strategies", "last_k", "--set", "last_k.k=3"],
        "between 1 and the model's depth 2",
    ),
    "rank below 1": (["--strategies", "lora", "--set", "lora.r=0"], "lora.r must be at least 1"),
    "missing weights file": (["--weights", "absent.safetensors"], "does not exist"),
    "unknown optimizer": (["--optimizer", "adamm"], "unknown optimizer 'adamm'"),
    "bad seeds": (["--seeds", "one"], "--seeds takes comma-separated integers"),
    "bad model arg": (["--model-arg", "depthh=2"], "does not accept"),
    "unknown flag": (["--epoch", "3"], "unrecognized arguments"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_line_exit_2_nothing_written(tmp_path, case):
    extra, message = BAD_INPUTS[case]
    result = run_cli(
        "run", "--dataset", "synthetic", *TINY_ARGS, *extra, "--results-dir", "results", cwd=tmp_path
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert message in lines[0]
    assert list(tmp_path.iterdir()) == [], "bad input wrote files"


def test_list_shows_every_strategy_and_dataset(tmp_path):
    result = run_cli("list", cwd=tmp_path)
    assert result.returncode == 0
    for name in [*strategies.names(), "cifar10", "cifar100", "digits", "synthetic"]:
        assert name in result.stdout


def documented_columns(table: str) -> list[str]:
    """Column names from the table's section of results/README.md."""
    text = (ROOT / "results" / "README.md").read_text()
    section = text.split(f"## `{table}/`")[1].split("\n## ")[0]
    names = []
    for line in section.splitlines():
        if line.startswith("| `"):
            names += re.findall(r"`([a-z0-9_]+)`", line.split("|")[1])
    return names


@pytest.mark.parametrize("table", list(SCHEMAS))
def test_every_column_is_documented(table):
    assert sorted(documented_columns(table)) == sorted(SCHEMAS[table].names)


def test_sweep_writes_one_ok_row_per_cell_in_the_schema(sweep_results):
    runs = pd.read_parquet(sweep_results / "runs")  # the whole folder, as users read it
    assert len(runs) == 2 * len(strategies.names())
    assert set(runs["status"]) == {"ok"}
    assert sorted(runs.groupby("strategy")["seed"].apply(sorted).tolist()) == [[0, 1]] * len(
        strategies.names()
    )
    for path in (sweep_results / "runs").glob("*.parquet"):
        assert pq.read_schema(path).remove_metadata() == SCHEMAS["runs"]
    assert (runs["trainable_params"] <= runs["total_params"]).all()
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
    assert f"skipping {2 * len(strategies.names())} cell(s) already done" in result.stderr
    assert sorted(path.name for path in (sweep_results / "runs").iterdir()) == before
