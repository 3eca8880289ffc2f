"""Experiment files (`run --config FILE.yaml`), the shipped protocols, and the data-efficiency figure."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

import strategies
from benchmark import cli
from benchmark.cli import experiment_file, yaml_file
from benchmark.cli.app import sweeps_of
from benchmark.cli.experiment import sweep_spec
from benchmark.cli.parser import build_parser
from benchmark.results import store
from tests.helpers import ROOT, TINY, TINY_ARGS, TINY_IMG, TINY_MODEL

# The published protocols; demo.yaml is the offline demo's own file (tests/test_shipped_backbone.py runs it).
PROTOCOLS = sorted(path for path in (ROOT / "protocols").glob("*.yaml") if path.stem != "demo")

# The tiny ViT on synthetic data, as an experiment file and as the equivalent flags.
TINY_FILE = {
    "strategies": ["lora", "linear"],
    "dataset": "synthetic",
    "model": TINY_MODEL,
    "img_size": TINY_IMG,
    "model_arg": dict(TINY),
    "no_pretrained": True,
    "epochs": 1,
    "lr": "3e-4",  # YAML reads 3e-4 (no dot) as a string: accepted for a float flag
    "set": {"lora": {"r": 4, "lr": 0.002}},
    "seeds": [0, 1],
    "device": "cpu",
}
TINY_FLAGS = [
    "--strategies",
    "lora,linear",
    "--dataset",
    "synthetic",
    *TINY_ARGS,
    "--no-pretrained",
    "--epochs",
    "1",
    "--lr",
    "0.0003",
    "--set",
    "lora.r=4",
    "--set",
    "lora.lr=0.002",
    "--seeds",
    "0,1",
    "--device",
    "cpu",
]


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # a protocol names weights: hub; a dry run must not fetch
    return tmp_path


def write(path: Path, values) -> Path:
    path.write_text(yaml.safe_dump(values) if not isinstance(values, str) else values)
    return path


def plan(capsys, *argv: str) -> list[dict]:
    assert cli.main(["run", *argv, "--dry-run", "--json"]) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def test_file_and_flags_give_the_same_cells_and_hashes(workdir, capsys):
    from_file = plan(capsys, "--config", str(write(workdir / "e.yaml", TINY_FILE)))
    from_flags = plan(capsys, *TINY_FLAGS)
    assert [cell["config_hash"] for cell in from_file] == [cell["config_hash"] for cell in from_flags]
    assert [(cell["strategy"], cell["seed"]) for cell in from_file] == [
        ("lora", 0),
        ("lora", 1),
        ("linear", 0),
        ("linear", 1),
    ]
    lora, linear = from_file[0], from_file[2]
    assert (lora["options"]["r"], lora["train"]["lr"], linear["train"]["lr"]) == (4, 0.002, 0.0003)
    # LoRA r=4 on the fused qkv of 2 blocks of width 32: r x (32 + 96) each, plus the 10-class head.
    assert lora["trainable_params"] == 2 * 4 * (32 + 96) + (32 * 10 + 10)
    assert list(workdir.iterdir()) == [workdir / "e.yaml"], "a dry run wrote files"


def test_command_line_wins_over_the_file(workdir, capsys):
    values = {key: value for key, value in TINY_FILE.items() if key != "dataset"}
    config = write(workdir / "e.yaml", values | {"datasets": ["synthetic", "digits"], "epochs": 3})
    cells = plan(capsys, "--config", str(config), "--lr", "0.05", "--set", "lora.r=2", "--seeds", "7")
    cells += plan(capsys, "--config", str(config), "--dataset", "digits", "--strategies", "lora")
    assert [(c["dataset"], c["strategy"], c["seed"]) for c in cells] == [
        ("synthetic", "lora", 7),
        ("synthetic", "linear", 7),
        ("digits", "lora", 7),
        ("digits", "linear", 7),
        ("digits", "lora", 0),  # --dataset replaces the file's list; the file's seeds stay
        ("digits", "lora", 1),
    ]
    assert {c["train"]["epochs"] for c in cells} == {3}  # not on the command line: the file's
    # --set merges per key: lora.r from the command line, lora.lr from the file (more specific than --lr,
    # as with flags alone); linear takes --lr from the command line.
    assert cells[0]["options"]["r"] == 2 and cells[0]["train"]["lr"] == 0.002
    assert cells[1]["train"]["lr"] == 0.05


BAD_FILES = {
    "unknown key": ("lrr: 0.1\n", "unknown key 'lrr'. Did you mean 'lr'? Valid: "),
    "wrong type": ("epochs: ten\n", "key 'epochs' must be an integer; got 'ten' (str)"),
    "a list for one value": ("lr: [0.1, 0.2]\n", "key 'lr' must be a number"),
    "a mapping expected": ("set: 16\n", "key 'set' must be a mapping"),
    "bad choice": ("precision: fp8\n", "key 'precision' must be one of auto, fp32, bf16"),
    "not a mapping": ("- lr\n", "must be a mapping of keys to values; got a list"),
    "unparsable": ("epochs: [1\n", "not valid YAML at line 2"),
    "missing": (None, "cannot read it"),
}


@pytest.mark.parametrize("case", BAD_FILES, ids=list(BAD_FILES))
def test_bad_file_is_one_line_exit_2_and_writes_nothing(workdir, capsys, case):
    text, expected = BAD_FILES[case]
    config = workdir / "e.yaml"
    if text is not None:
        config.write_text(text)
    before = sorted(workdir.iterdir())
    assert cli.main(["run", "--config", str(config), "--strategies", "linear"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: --config {config}: "), err
    assert expected in err
    assert sorted(workdir.iterdir()) == before


def test_resolved_config_is_stored_and_reruns_the_same_cell(workdir, capsys):
    values = TINY_FILE | {"strategies": "linear", "seeds": [0], "results_dir": "results"}
    values |= {"set": {"linear": {"weight_decay": 0.01}}, "augment": False}
    config = write(workdir / "e.yaml", values)
    assert cli.main(["run", "--config", str(config), "--dry-run"]) == 0
    assert not (workdir / "results").exists(), "a dry run stored its configuration"
    assert cli.main(["run", "--config", str(config), "--epochs", "2"]) == 0
    stored = list((workdir / "results" / "experiments").glob("*.yaml"))
    assert len(stored) == 1
    resolved = yaml.safe_load(stored[0].read_text())
    assert f"# Command: python -m benchmark run --config {config} --epochs 2\n" in stored[0].read_text()
    assert (resolved["epochs"], resolved["lr"], resolved["strategies"]) == (2, 0.0003, "linear")
    assert resolved["model_arg"] == TINY and resolved["set"] == {"linear": {"weight_decay": 0.01}}
    assert resolved["augment"] is False and "force" not in resolved and "dry_run" not in resolved
    row = store.read(workdir / "results", "runs")
    capsys.readouterr()
    again = plan(capsys, "--config", str(stored[0]))
    assert [cell["config_hash"] for cell in again] == list(row["config_hash"])


# A results folder names each sweep's stored configuration by its hash (RESULTS_DIR/experiments/<hash>.yaml):
# these are the texts and hashes that commit 67cded5 (before the typed Experiment) stored for this file and
# command line, so that a folder written then is recognised now.
STORED_BEFORE = {
    "file": """strategies: [lora, linear]
datasets: [synthetic, digits]
model: vit_tiny_patch16_224
img_size: 32
model_arg: {patch_size: 8, depth: 2, embed_dim: 32, num_heads: 2}
no_pretrained: true
epochs: 1
lr: 3e-4
augment: false
set: {lora: {r: 4, lr: 0.002}}
search: {weight_decay: [0, 1e-4]}
seeds: [0, 1]
device: cpu
""",
    "flags": ["--set", "lora.r=2", "--seeds", "3", "--keep-weights", "--force"],
    "hashes": ["4044422ff7d3e3fe", "740bdea5c158ddbd"],
    "first": {
        "augment": False,
        "data_dir": "data",
        "dataset": "synthetic",
        "device": "cpu",
        "epochs": 1,
        "img_size": 32,
        "keep_weights": True,
        "lr": 0.0003,
        "model": "vit_tiny_patch16_224",
        "model_arg": {"depth": 2, "embed_dim": 32, "num_heads": 2, "patch_size": 8},
        "no_pretrained": True,
        "precision": "auto",
        "results_dir": "results",
        "search": {"weight_decay": [0, 0.0001]},
        "seeds": "3",
        "set": {"lora": {"lr": 0.002, "r": 2}},
        "strategies": "lora,linear",
        "weights": "hub",
    },
}


def test_the_stored_configuration_is_what_earlier_versions_stored(workdir):
    config = write(workdir / "e.yaml", STORED_BEFORE["file"])
    argv = ["run", "--config", str(config), *STORED_BEFORE["flags"]]
    sweeps = sweeps_of(argv, build_parser().parse_args(argv))
    assert [experiment_file.config_hash(sweep.resolved) for sweep in sweeps] == STORED_BEFORE["hashes"]
    assert sweeps[0].resolved == STORED_BEFORE["first"]
    assert yaml.safe_load(experiment_file.to_yaml(sweeps[0].resolved, "header")) == STORED_BEFORE["first"]


@pytest.mark.parametrize("path", PROTOCOLS, ids=[path.stem for path in PROTOCOLS])
def test_protocol_dry_runs_offline(workdir, capsys, path):
    assert set(yaml_file.load(path)) <= set(experiment_file.valid_keys())
    # One seed of each cell keeps the test short; the file is read and planned in full otherwise.
    assert cli.main(["run", "--config", str(path), "--dry-run", "--seeds", "0"]) == 0, capsys.readouterr().err
    out = " ".join(capsys.readouterr().out.split())  # rich may wrap a title
    sweeps = re.findall(r"Plan for (cifar\d+), [^,(]+(?:, train size (\d+%))?", out)
    sizes = yaml.safe_load(path.read_text()).get("train_sizes", [""])
    assert sweeps == [(dataset, size) for dataset in ("cifar10", "cifar100") for size in sizes]
    assert list(workdir.iterdir()) == []


def test_protocol_headers_cite_their_source_and_departures():
    assert [path.stem for path in PROTOCOLS] == ["data_efficiency", "equal_budget", "vit_finetune", "vtab1k"]
    for path in PROTOCOLS:
        lines = path.read_text().splitlines()
        header = "\n".join(lines[: next(i for i, line in enumerate(lines) if not line.startswith("#"))])
        assert "et al. 20" in header and "Where this benchmark departs" in header, path.name


def test_equal_budget_gives_every_strategy_the_same_budget(workdir):
    """`--strategies all` as the README shows it: every strategy's search cells have the same steps, batch,
    optimiser, schedule, augmentation and the same learning-rate grid; only what defines a method differs.
    (The cells as `run` expands them, without the dry run's per-cell parameter counts on ViT-B.)"""
    from benchmark.sweep import search

    argv = ["run", "--config", str(ROOT / "protocols" / "equal_budget.yaml"), "--strategies", "all"]
    args = build_parser().parse_args(argv)
    sweeps = sweeps_of(argv, args)
    assert [sweep.experiment.dataset for sweep in sweeps] == ["cifar10", "cifar100"]
    cells = search.stages(sweep_spec(sweeps[0].experiment)).first
    assert {cell.strategy for cell in cells} == set(strategies.names())
    # epochs and warmup_epochs are each strategy's default and unused: `steps` replaces them
    unused = {"lr", "epochs", "warmup_epochs"}
    budgets = {
        json.dumps({k: v for k, v in dataclasses.asdict(cell.train).items() if k not in unused})
        for cell in cells
    }
    assert len(budgets) == 1, budgets
    budget = json.loads(budgets.pop())
    assert (budget["steps"], budget["batch_size"], budget["optimizer"], budget["augment"]) == (
        2500,
        128,
        "adamw",
        True,
    )
    grids = {name: sorted(c.train.lr for c in cells if c.strategy == name) for name in strategies.names()}
    assert all(grid == grids["full"] for grid in grids.values()) and len(grids["full"]) == 5


def _runs() -> pd.DataFrame:
    """Two strategies at 100 and 1,000 images; at lora's 1,000, two cells (searched lr), two seeds each."""
    rows = []
    for strategy, size, cell, val, tests in [
        ("linear", 100, "a", 0.50, (0.40, 0.42)),
        ("linear", 1000, "b", 0.70, (0.60, 0.64)),
        ("lora", 100, "c", 0.55, (0.45, 0.47)),
        ("lora", 1000, "d", 0.80, (0.70, 0.74)),  # the better validation: chosen
        ("lora", 1000, "e", 0.75, (0.90, 0.90)),  # the better test, worse validation: not chosen
    ]:
        for seed, test in enumerate(tests):
            rows.append(
                dict(dataset="cifar10", model="m", strategy=strategy, n_train=size, n_val=20)
                | dict(cell_hash=cell, seed=seed)
                | dict(status="ok", best_val_top1=val, test_top1=test, train_size=str(size))
            )
    rows.append(rows[-1] | {"status": "failed", "test_top1": 0.0, "seed": 5})
    return pd.DataFrame(rows)


def test_efficiency_points_select_by_validation_and_average_seeds():
    from benchmark.report.data_efficiency import differs_in_train_size, efficiency_points

    points = efficiency_points(_runs()).set_index(["strategy", "n_train"])
    assert list(points["n_labelled"]) == [120, 1020, 120, 1020], "training + validation images"
    assert points.loc[("lora", 1000), "mean"] == pytest.approx(72.0)  # (70 + 74) / 2, cell d
    assert points.loc[("lora", 1000), "std"] == pytest.approx(2 * 2**0.5)  # sample std of 70, 74
    assert points.loc[("linear", 100), "mean"] == pytest.approx(41.0)
    assert list(points["seeds"]) == [2, 2, 2, 2]
    assert differs_in_train_size(_runs())
    assert not differs_in_train_size(_runs().assign(train_size="10%"))


def test_data_efficiency_figure_has_a_line_per_strategy_on_a_log_axis():
    from benchmark.report.data_efficiency import data_efficiency_figure

    fig = data_efficiency_figure(_runs())
    (ax,) = fig.axes
    assert ax.get_xscale() == "log"
    assert [text.get_text() for text in ax.get_legend().get_texts()] == ["linear", "lora"]
    lora = next(bars for bars in ax.containers if bars.get_label() == "lora")
    assert list(lora.lines[0].get_xdata()) == [120, 1020], "labelled images: 100 or 1,000 + 20 validation"
    assert list(lora.lines[0].get_ydata()) == pytest.approx([46.0, 72.0])  # (45+47)/2, cell d's (70+74)/2


def test_a_run_stopped_by_bad_input_stores_no_configuration(workdir, capsys):
    values = TINY_FILE | {
        "dataset": "cifar10",
        "no_download": True,
        "data_dir": "empty",
        "results_dir": "results",
    }
    assert cli.main(["run", "--config", str(write(workdir / "e.yaml", values))]) == 2
    assert "cifar10" in capsys.readouterr().err
    assert sorted(workdir.iterdir()) == [workdir / "e.yaml"], "bad input wrote files"
