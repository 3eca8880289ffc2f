"""Resume is exact for every strategy, and a checkpoint that makes a resume fail cannot block its cell.

A kill is simulated in this process at an epoch boundary, right after the checkpoint is written (the last
moment a SIGKILL can take: the next epoch's work is lost either way); the rerun starts as a new process does,
from the seed, a fresh backbone and a fresh strategy object, and resumes from the checkpoint alone. The real
SIGKILL of a separate process is tests/test_faults.py's.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import strategies
from benchmark import cli
from benchmark.config import RunConfig, make_train_params
from benchmark.data import datasets
from benchmark.results import store
from benchmark.train.runner import TEST_METRICS, Outcome, run
from benchmark.train.step import seed_everything
from benchmark.weights.backbone import create
from strategies.base import Strategy
from tests.helpers import TINY, TINY_IMG, TINY_MODEL, tiny_run

# Its module fixtures are computed once: every test of this file runs on one pytest-xdist worker.
pytestmark = pytest.mark.xdist_group("test_resume_every_strategy")

CPU = torch.device("cpu")
# 5 epochs of 2 steps (32 training images, batches of 16): 10 steps. AdaLoRA's defaults then warm up for
# int(0.1 * 10) = 1 step, prune over steps 2-7, fix the budget at step 8 and train steps 9-10 under the
# final rank pattern (its last 20%). Killed after epochs 2 and 4 (steps 4 and 8), the run resumes once
# while the rank allocator's scores steer pruning and once where only its rank pattern is left.
EPOCHS, KILLED_AFTER = 5, (2, 4)
TRAIN = {"epochs": EPOCHS, "batch_size": 16, "train_size": "32", "warmup_epochs": 1.0}
# Where a strategy's defaults leave its own state without effect in so short a run. AdaLoRA at rank 12 -> 8
# and lr 1e-3 keeps the same singular values whatever its scores (checked: dropping them on resume changes
# no bit); pruned to rank 1 at lr 1e-2, which ones survive depends on the scores' history.
OPTIONS = {"adalora": {"target_r": 1}}
TRAIN_OVERRIDES = {"adalora": {"lr": 1e-2}}


class Killed(BaseException):
    """The end of a process: no handler of the runner's sees it (it is not an Exception)."""


@pytest.fixture(scope="module")
def splits(tmp_path_factory) -> datasets.Splits:
    return datasets.load("synthetic", tmp_path_factory.mktemp("data"), 0.1)


def cell(name: str, results_dir: Path) -> RunConfig:
    return RunConfig(
        strategy=name,
        options=strategies.get(name).Options(**OPTIONS.get(name, {})),
        dataset="synthetic",
        model=TINY_MODEL,
        model_args=tuple(TINY.items()),
        weights="none",
        weights_sha256="",
        img_size=TINY_IMG,
        seed=0,
        train=make_train_params(name, TRAIN, TRAIN_OVERRIDES.get(name, {})),
        precision="fp32",
        val_fraction=0.1,
        device="cpu",
        results_dir=results_dir,
    )


def run_as_a_new_process(
    config: RunConfig, splits: datasets.Splits, warnings: list[str], on_epoch=None
) -> Outcome:
    """What the sweep does for a cell: seed, a fresh backbone (random weights: seed 0's), the runner."""
    seed_everything(config.seed)
    backbone = create(config.model, len(splits.class_names), "none", config.img_size, dict(config.model_args))
    checkpoint_file = store.checkpoint_path(config.results_dir, config.config_hash)
    return run(config, splits, backbone, CPU, checkpoint_file, on_epoch=on_epoch, log=warnings.append)


def killed_and_resumed(
    config: RunConfig, splits: datasets.Splits, warnings: list[str]
) -> tuple[Outcome, int]:
    """The cell killed after each epoch of KILLED_AFTER and rerun until it finishes; and its reruns."""

    def kill(record: dict) -> None:
        if record["epoch"] in KILLED_AFTER:
            raise Killed

    for reruns in range(len(KILLED_AFTER) + 1):
        try:
            return run_as_a_new_process(config, splits, warnings, kill), reruns
        except Killed:
            assert checkpoint_of(config).exists(), "killed after an epoch, the checkpoint is there"
    raise AssertionError("the run never finished")


def checkpoint_of(config: RunConfig) -> Path:
    return store.checkpoint_path(config.results_dir, config.config_hash)


@pytest.mark.parametrize("name", strategies.names())
def test_killed_and_resumed_equals_an_uninterrupted_run_bit_for_bit(name, splits, tmp_path):
    warnings: list[str] = []
    resumed, reruns = killed_and_resumed(cell(name, tmp_path / "killed"), splits, warnings)
    uninterrupted = run_as_a_new_process(cell(name, tmp_path / "clean"), splits, warnings)

    assert warnings == [], "every checkpoint was readable and restored"
    assert reruns == len(KILLED_AFTER) and resumed.row["resumed_from_epoch"] == KILLED_AFTER[-1]
    assert uninterrupted.row["resumed_from_epoch"] == 0
    compared = [*TEST_METRICS, "test_top1_last_epoch", "best_val_top1", "best_val_epoch", "final_val_top1"]
    assert {key: resumed.row[key] for key in compared} == {key: uninterrupted.row[key] for key in compared}
    assert resumed.final_state.keys() == uninterrupted.final_state.keys()
    for key, tensor in uninterrupted.final_state.items():
        assert torch.equal(resumed.final_state[key], tensor), f"{key} differs after resuming"
    curves = ["epoch", "train_loss", "train_top1", "val_loss", "val_top1", "lr"]
    assert resumed.tables["epochs"][curves].equals(uninterrupted.tables["epochs"][curves])


class ForgetsItsState(Strategy):
    """A head-only strategy that keeps state outside the checkpoint, as AdaLoRA's rank pattern once was:
    resumed, its first step fails. Its first run ends as a Ctrl-C would, after a checkpoint."""

    name = "forgets_its_state"
    family = "probe"
    description = "test strategy whose resumed run fails"
    interrupt_at_step: int | None = None

    def prepare(self, model):
        for param in model.parameters():
            param.requires_grad_(False)
        model.reset_classifier(model.num_classes)
        self.pattern = None  # set at the first step, never saved
        return model

    def on_step_end(self, model, step, total_steps):
        if step == 1:
            self.pattern = {"kept": [True]}
        self.pattern.keys()  # AttributeError once resumed
        if step == self.interrupt_at_step:
            raise KeyboardInterrupt


@pytest.fixture
def forgets_its_state():
    strategies.register(ForgetsItsState)
    yield ForgetsItsState.name
    strategies.REGISTRY.remove(ForgetsItsState.name)
    ForgetsItsState.interrupt_at_step = None


def test_a_checkpoint_that_fails_its_resume_is_set_aside_recorded_and_the_rerun_starts_fresh(
    forgets_its_state, tmp_path
):
    # In this process (the test strategy is registered here), so the results folder is absolute.
    results = tmp_path / "results"
    argv = [*tiny_run(forgets_its_state, epochs=2), "--train-size", "32", "--batch-size", "16"]
    argv += ["--results-dir", str(results)]
    ForgetsItsState.interrupt_at_step = 3  # in epoch 2, after epoch 1's checkpoint
    assert cli.main(argv) == 130, "the first run ends as Ctrl-C ends it"
    ForgetsItsState.interrupt_at_step = None
    (saved,) = (results / "checkpoints").glob("*.pt")

    assert cli.main(argv) == 1
    failed = store.read(results, "runs").query("status == 'failed'")
    (error,) = failed["error"]
    assert error.startswith(
        "ResumeFailed: resuming from the checkpoint of epoch 1 failed (AttributeError: 'NoneType' object "
        "has no attribute 'keys'); "
    )
    assert error.endswith(f"set aside as {saved.name}.unresumable, a rerun starts fresh")
    assert sorted(path.name for path in saved.parent.iterdir()) == [f"{saved.name}.unresumable"]

    assert cli.main([*argv, "--force"]) == 0  # with or without --force: the rerun no longer fails
    runs = store.read(results, "runs")
    (done,) = runs.query("status == 'ok'").itertuples()
    assert done.resumed_from_epoch == 0 and done.epochs_completed == 2
    assert sorted(path.name for path in saved.parent.iterdir()) == [f"{saved.name}.unresumable"]
