"""The command line as a user runs it: dry-run plan, bad input, an end-to-end run, the results schema."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import strategies
from benchmark import cli
from benchmark.cli.listing import strategy_markdown
from benchmark.results import readme
from benchmark.results.store import SCHEMAS
from tests.helpers import ROOT, TINY_ARGS, run_cli, run_process


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


@pytest.mark.slow
def test_bad_input_in_a_real_process_has_no_traceback(tmp_path):
    result = run_process("run", "--strategies", "lorra", "--dataset", "synthetic", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: unknown strategy 'lorra'. Did you mean 'lora'? Valid: {', '.join(strategies.names())}"
    ]


def test_list_shows_every_strategy_and_dataset(tmp_path):
    result = run_cli("list", cwd=tmp_path)
    assert result.returncode == 0
    for name in [*strategies.names(), "cifar10", "cifar100", "digits", "synthetic"]:
        assert name in result.stdout
    # Each option with its meaning (rich may fold a long cell, so the start of one help text is checked).
    assert "r=8: rank of the update" in result.stdout


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
    assert readme.render_readme(text) == text, "run `python -m benchmark.results.readme` to regenerate"
    for table in SCHEMAS:
        assert f"<!-- columns:{table} -->" in text


def test_readme_strategy_table_is_the_registry():
    text = (ROOT / "README.md").read_text()
    block = text.split("<!-- strategies -->\n")[1].split("\n<!-- /strategies -->")[0]
    assert block == strategy_markdown(), "paste `python -m benchmark list --markdown` into README.md"
    assert block.count("\n| `") == len(strategies.names()) >= 20


def test_a_strategy_that_needs_a_vit_is_refused_on_a_resnet_at_plan_time(tmp_path, capsys, monkeypatch):
    argv = ["run", "--strategies", "linear,vpt_deep", "--model", "resnet50", "--no-pretrained"]
    status, lines = run_in_process([*argv, "--dataset", "digits"], tmp_path, capsys, monkeypatch)
    assert status == 2 and len(lines) == 1
    assert "vpt_deep" in lines[0] and "needs a timm VisionTransformer" in lines[0]
    assert list(tmp_path.iterdir()) == [], "refused before anything ran or was written"
