"""A row's costs mean the same for every strategy and every position in a sweep: the frozen trunk's pass is
charged to every run that uses its outputs, throughput counts images through the whole model, a search never
chooses by wall-clock time, and peak memory says what it measured."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from benchmark import cli
from benchmark.report import cells
from benchmark.results import selection, store
from benchmark.sweep import engine as sweep_module
from benchmark.train.inputs import SharedTrunkOutputs
from benchmark.train.measure import PeakMemory
from tests.helpers import TINY_ARGS, tiny_vit

CPU_KINDS = {"cpu_process_resident_peak", "cpu_process_lifetime_peak"}


@pytest.fixture
def pretrained(tmp_path, monkeypatch):
    """A weights file in a fresh working folder, and a fresh trunk cache, as a new process has."""
    from safetensors.torch import save_file

    torch.manual_seed(0)
    save_file(tiny_vit().state_dict(), str(tmp_path / "pretrained.safetensors"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sweep_module, "SHARED_TRUNKS", SharedTrunkOutputs())
    return ["--dataset", "synthetic", *TINY_ARGS, "--epochs", "2", "--device", "cpu"] + [
        "--weights",
        "pretrained.safetensors",
    ]


def test_the_probes_feature_pass_is_charged_to_every_seed_and_its_throughput_compares(pretrained):
    # full first: the process's first-call overheads are not the probe's
    assert cli.main(["run", *pretrained, "--strategies", "full", "--seeds", "0"]) == 0
    assert cli.main(["run", *pretrained, "--strategies", "linear", "--seeds", "0,1"]) == 0
    runs = store.read("results", "runs").set_index(["strategy", "seed"])
    probe = runs.loc["linear"].sort_index()
    assert probe["trunk_cache_reused"].tolist() == [False, True], "seed 1 reuses seed 0's pass"
    # The reused pass costs what it cost when it ran: the same measurement, charged again.
    assert (probe["feature_seconds"] > 0).all()
    assert probe["feature_seconds"].nunique() == 1
    assert (probe["trunk_cache_bytes"] > 0).all()
    # The pass is part of training (its training share) and evaluation (the rest) in both rows.
    assert (probe["train_seconds"] + probe["eval_seconds"] >= probe["feature_seconds"]).all()
    assert runs.loc[("full", 0), "feature_seconds"] == 0  # nothing frozen, nothing cached
    # Images through the whole model: the probe's two epochs of head steps on cached features are not two
    # epochs of images (which made its img/s 10x and more above full's on a ViT-B).
    full = runs.loc[("full", 0), "train_images_per_second"]
    assert (probe["train_images_per_second"] < 10 * full).all(), (
        list(probe["train_images_per_second"]),
        full,
    )
    assert (probe["n_labelled"] == probe["n_train"] + probe["n_val"]).all()
    assert set(runs["memory_kind"]) <= CPU_KINDS  # a process-level number, named so (never bold)


def test_search_ties_go_to_fewer_parameters_then_grid_order_never_to_time():
    # (validation top-1, trainable parameters, grid position)
    assert selection.choose([(0.9, 5_000, 0), (0.9, 1_000, 1), (0.8, 10, 2)]) == 1
    assert selection.choose([(0.9, 1_000, 2), (0.9, 1_000, 1), (0.95, 9_999, 0)]) == 0
    assert selection.choose([(0.9, 1_000, 2), (0.9, 1_000, 1)]) == 1


def test_the_report_picks_the_search_choice_by_the_same_rule():
    """cells.chosen_point (the report) agrees with `run`: on a validation tie the point with fewer trainable
    parameters, though the other ran faster."""
    space = json.dumps({"r": [4, 8, 16]})
    rows = pd.DataFrame(
        [
            # r=4 ties r=8 on validation and was the quicker run; r=8 has fewer params here only to tell
            # the rule from "smallest grid value" and from "first in the grid".
            dict(
                search_point=json.dumps({"r": 4}),
                best_val_top1=0.9,
                trainable_params=9_000,
                train_seconds=1.0,
            ),
            dict(
                search_point=json.dumps({"r": 8}),
                best_val_top1=0.9,
                trainable_params=5_000,
                train_seconds=9.0,
            ),
            dict(
                search_point=json.dumps({"r": 16}), best_val_top1=0.8, trainable_params=100, train_seconds=0.5
            ),
        ]
    ).assign(search_space=space, stage="search", status="ok", config_hash=["a", "b", "c"])
    assert cells.chosen_point(rows) == json.dumps({"r": 8})


def test_cpu_peak_memory_says_it_is_the_processs():
    memory = PeakMemory(torch.device("cpu"))
    memory.reset()
    assert memory.kind in CPU_KINDS
    assert memory.peak_bytes() > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_gpu_peak_memory_does_not_depend_on_what_ran_before(pretrained, monkeypatch):
    """A cell's peak on GPU is its own: the same whether another cell left a shared trunk cache and data
    behind or the process is fresh."""
    args = [arg if arg != "cpu" else "cuda" for arg in pretrained] + ["--no-augment", "--seeds", "0"]
    assert cli.main(["run", *args, "--strategies", "last_k,full", "--results-dir", "after"]) == 0
    monkeypatch.setattr(sweep_module, "SHARED_TRUNKS", SharedTrunkOutputs())
    torch.cuda.empty_cache()
    assert cli.main(["run", *args, "--strategies", "full", "--results-dir", "alone"]) == 0
    after = store.read("after", "runs").set_index("strategy").loc["full"]
    alone = store.read("alone", "runs").iloc[0]
    assert after["memory_kind"] == alone["memory_kind"] == "cuda_allocated_above_start"
    assert after["peak_memory_bytes"] == pytest.approx(alone["peak_memory_bytes"], rel=0.05)


def test_the_accuracy_vs_time_figure_says_when_budgets_differ():
    from benchmark.report.plots import budget_note

    group = pd.DataFrame({"cell_hash": ["p", "f"], "label": ["linear", "full"]})
    common = dict(steps=0, n_train=1000, batch_size=100, search_space=None)
    runs = pd.DataFrame(
        [
            dict(cell_hash="p", epochs=90, optimizer="muon", augment=False) | common,
            dict(cell_hash="f", epochs=10, optimizer="momentum", augment=True) | common,
        ]
    )
    note = budget_note(runs, group)
    assert note.startswith("Training budgets differ")
    # 1,000 images in batches of 100: 10 steps an epoch
    assert "linear: 900 steps x 100, muon, no augmentation, 1 search point(s)" in note
    assert "full: 100 steps x 100, momentum, augmented, 1 search point(s)" in note
    space = json.dumps({"lr": [0.1, 0.01]})
    same = dict(steps=500, epochs=10, optimizer="adamw", augment=True, search_space=space)
    note = budget_note(runs.assign(**same), group)
    assert (
        note
        == "Same training budget for every strategy: 500 steps x 100, adamw, augmented, 2 search point(s)."
    )
