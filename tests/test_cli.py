"""The command line as a user runs it: dry-run plan, bad input, an end-to-end run, the results schema."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pyarrow.parquet as pq
import pytest

import strategies
from benchmark import cli, columns, store
from benchmark.store import SCHEMAS
from tests.helpers import ROOT, SWEEP, TINY_ARGS, run_cli
from tests.test_strategies import expected_trainable


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
    issue_counts = {  # the issue's numbers: ViT-B/16, 100 classes, each tensor once, head included
        "bitfit": 179_812,
        "norm": 115_300,
        "vpt_shallow": 84_580,
        "vpt_deep": 169_060,
        "adaptformer": 1_266_532,
        "ssf": 282_724,
        "dora": 399_460,
        "loha": 666_724,
        "ia3": 141_412,
    }
    assert {name: plan[name]["trainable_params"] for name in issue_counts} == issue_counts
    assert len(plan) == len(strategies.names()) >= 20
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


def run_in_process(argv: list[str], folder, capsys, monkeypatch) -> tuple[int, list[str]]:
    """`python -m benchmark ARGV` in this process (no 10 s interpreter start), in `folder`."""
    monkeypatch.chdir(folder)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    status = cli.main(argv)
    return status, capsys.readouterr().err.strip().splitlines()


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_line_exit_2_nothing_written(tmp_path, capsys, monkeypatch, case):
    extra, message = BAD_INPUTS[case]
    argv = ["run", "--dataset", "synthetic", *TINY_ARGS, *extra, "--results-dir", "results"]
    status, lines = run_in_process(argv, tmp_path, capsys, monkeypatch)
    assert status == 2
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert message in lines[0]
    assert list(tmp_path.iterdir()) == [], "bad input wrote files"


def test_bad_input_in_a_real_process_has_no_traceback(tmp_path):
    result = run_cli("run", "--strategies", "lorra", "--dataset", "synthetic", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: unknown strategy 'lorra'. Did you mean 'lora'? Valid: {', '.join(strategies.names())}"
    ]


def test_list_shows_every_strategy_and_dataset(tmp_path):
    result = run_cli("list", cwd=tmp_path)
    assert result.returncode == 0
    for name in [*strategies.names(), "cifar10", "cifar100", "digits", "synthetic"]:
        assert name in result.stdout


# Run in a fresh interpreter: imports every strategy (the rule in strategies/__init__.py: a strategy
# module's top level imports no torch or peft) and checks its metadata, then runs each command line that
# must answer at once, and prints, as JSON per step, which heavy library was imported first and from where.
LIGHT_STEPS = """
import contextlib, io, json, sys, traceback

HEAVY, ROOT, culprits = ("torch", "timm", "peft", "transformers", "pandas"), sys.argv[1], {}


class Witness:  # records where a heavy library is first imported; finds nothing itself
    def find_spec(self, name, path=None, target=None):
        library = name.partition(".")[0]
        if library in HEAVY and library not in culprits:
            ours = [frame for frame in traceback.extract_stack() if frame.filename.startswith(ROOT)]
            culprits[library] = f"{ours[-1].filename}:{ours[-1].lineno}" if ours else "outside the project"


sys.meta_path.insert(0, Witness())
import strategies
from benchmark import cli

for name in strategies.names():
    strategy = strategies.get(name)
    strategy.Options(), strategy.search_space(), strategy.defaults, strategy.source
print(json.dumps({"step": "import strategies", "heavy": dict(culprits)}))
for argv in json.loads(sys.argv[2]):
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
        try:
            code = cli.main(argv)
        except SystemExit as exit:  # --help
            code = exit.code
    print(json.dumps({"step": argv, "code": code, "err": err.getvalue(), "heavy": dict(culprits)}))
"""
LIGHT_COMMANDS = {  # command line -> its exit status
    ("--help",): 0,
    ("run", "--help"): 0,
    ("list",): 0,
    ("run", "--strategies", "lorra"): 2,  # a usage error: "Did you mean 'lora'?"
}


def test_help_list_and_usage_errors_import_no_torch(tmp_path):
    """`--help`, `run --help`, `list` and a usage error answer at once: none imports torch, timm, peft,
    transformers or pandas; nor does importing every registered strategy (a new one that does fails here)."""
    result = subprocess.run(
        [sys.executable, "-c", LIGHT_STEPS, str(ROOT), json.dumps(list(LIGHT_COMMANDS))],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ | {"PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr
    steps = [json.loads(line) for line in result.stdout.splitlines()]
    assert [step["step"] for step in steps] == ["import strategies", *map(list, LIGHT_COMMANDS)]
    for step in steps:
        assert step["heavy"] == {}, f"{step['step']} imported {step['heavy']} (library: where)"
        if "code" in step:
            assert step["code"] == LIGHT_COMMANDS[tuple(step["step"])], step["err"]
    assert "Did you mean 'lora'?" in steps[-1]["err"]
    assert list(tmp_path.iterdir()) == [], "a command that must answer at once wrote files"


def test_results_readme_documents_every_column_as_declared():
    text = (ROOT / "results" / "README.md").read_text()
    assert columns.render_readme(text) == text, "run `python -m benchmark.columns` to regenerate"
    for table in SCHEMAS:
        assert f"<!-- columns:{table} -->" in text


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
    assert len(runs) == 2 * len(strategies.names())
    assert set(runs["status"]) == {"ok"}
    assert sorted(runs.groupby("strategy")["seed"].apply(sorted).tolist()) == [[0, 1]] * len(
        strategies.names()
    )
    for path in (sweep_results / "runs").glob("*.parquet"):
        assert pq.read_schema(path).remove_metadata() == SCHEMAS["runs"]
    for _, run in runs.iterrows():  # exact counts, the head counted once
        assert run["trainable_params"] == expected_trainable(run["strategy"]), run["strategy"]
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
    assert f"skipping {2 * len(strategies.names())} cell(s) already done" in result.stderr
    assert sorted(path.name for path in (sweep_results / "runs").iterdir()) == before


def test_readme_strategy_table_is_the_registry():
    text = (ROOT / "README.md").read_text()
    block = text.split("<!-- strategies -->\n")[1].split("\n<!-- /strategies -->")[0]
    assert block == cli.strategy_markdown(), "paste `python -m benchmark list --markdown` into README.md"
    assert block.count("\n| `") == len(strategies.names()) >= 20


def test_a_strategy_that_needs_a_vit_is_refused_on_a_resnet_at_plan_time(tmp_path, capsys, monkeypatch):
    argv = ["run", "--strategies", "linear,vpt_deep", "--model", "resnet50", "--no-pretrained"]
    status, lines = run_in_process([*argv, "--dataset", "digits"], tmp_path, capsys, monkeypatch)
    assert status == 2 and len(lines) == 1
    assert "vpt_deep" in lines[0] and "needs a timm VisionTransformer" in lines[0]
    assert list(tmp_path.iterdir()) == [], "refused before anything ran or was written"
