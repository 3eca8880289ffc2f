"""Training controls of published protocols: steps instead of epochs, gradient accumulation, a fixed
training subset, the learning-rate schedule after warm-up, and early stopping; with checkpoint and resume."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

import strategies
from benchmark.cli import main
from benchmark.config import TrainParams
from benchmark.data import datasets
from benchmark.errors import UsageError
from benchmark.sweep.engine import execute
from benchmark.sweep.plan import SweepSpec, expand
from benchmark.sweep.progress import Progress
from benchmark.train.distributed import Dist
from benchmark.train.prepare import prepare_model
from benchmark.train.step import Stepper, make_optimizer, make_scheduler
from tests.helpers import TINY, TINY_ARGS, TINY_IMG, TINY_MODEL, tiny_vit

CPU = torch.device("cpu")


def runs(results: Path) -> pd.DataFrame:
    return pd.read_parquet(results / "runs").sort_values(["strategy", "seed"]).reset_index(drop=True)


def epochs(results: Path) -> pd.DataFrame:
    return pd.read_parquet(results / "epochs").sort_values("epoch").reset_index(drop=True)


def sweep(results: Path, log=lambda text: None, **train_flags) -> None:
    """One `linear` cell of the tiny ViT on 20 synthetic images: one optimiser step per epoch."""
    spec = SweepSpec(
        strategies=["linear"],
        dataset="synthetic",
        model=TINY_MODEL,
        weights="none",
        img_size=TINY_IMG,
        model_args=TINY,
        train_flags={"train_size": "20", "batch_size": 20, "warmup_epochs": 0.0} | train_flags,
        eval_batch_size=256,
        results_dir=results,
    )
    execute(expand(spec), CPU, Dist(), Progress(log, verbose=True))  # every epoch's line reaches `log`


def one_step(accumulate: int, batch: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    prepared = prepare_model("full", strategies.get("full").Options(), tiny_vit())
    # No clipping: it would hide a wrongly scaled gradient.
    train = TrainParams(batch_size=len(labels), accumulate=accumulate, lr=0.1, clip_grad_norm=0.0)
    optimizer = make_optimizer(prepared.model, train, CPU)
    scheduler = make_scheduler(optimizer, 0, 10)
    Stepper(prepared.trainable, prepared, optimizer, scheduler, train, "fp32", CPU, 10)(batch, labels)
    return {name: param.detach().clone() for name, param in prepared.model.named_parameters()}


def test_accumulating_four_micro_batches_takes_the_same_step_as_the_whole_batch():
    generator = torch.Generator().manual_seed(1)
    batch = torch.randn(16, 3, TINY_IMG, TINY_IMG, generator=generator)
    labels = torch.randint(0, 10, (16,), generator=generator)
    whole, accumulated, start = (
        one_step(1, batch, labels),
        one_step(4, batch, labels),
        tiny_vit().state_dict(),
    )
    assert any(not torch.equal(whole[name], start[name]) for name in whole), "the step changed nothing"
    for name in whole:
        torch.testing.assert_close(accumulated[name], whole[name], rtol=0, atol=1e-5, msg=name)


def test_bad_knob_values_are_one_line_usage_errors():
    for values, named in [
        ({"batch_size": 30, "accumulate": 4}, "accumulate"),
        ({"steps": 10, "warmup_steps": 10}, "warmup_steps"),
        ({"warmup_steps": 5}, "warmup_steps"),
        ({"steps": -1}, "steps"),
        ({"train_size": "0"}, "train_size"),
        ({"train_size": "150%"}, "train_size"),
        ({"train_size": "ten"}, "train_size"),
        ({"schedule": "linear"}, "schedule"),
        ({"early_stop": -1}, "early_stop"),
    ]:
        with pytest.raises(UsageError, match=named) as caught:
            TrainParams(**values)
        assert "\n" not in str(caught.value)


def test_train_size_is_the_same_stratified_subset_for_every_strategy_and_seed(tmp_path):
    splits = datasets.load("digits", tmp_path, val_fraction=0.1, download=False)
    first = datasets.train_subset_index(splits.train.labels, "100")
    again = datasets.train_subset_index(datasets.load("digits", tmp_path, 0.1, False).train.labels, "100")
    assert torch.equal(first, again) and len(first.unique()) == 100
    chosen, all_labels = splits.train.labels[first], splits.train.labels
    for label in range(10):  # every class, in its share of the training split to within one image
        share = 100 * (all_labels == label).sum().item() / len(all_labels)
        assert abs((chosen == label).sum().item() - share) < 1
    assert datasets.train_count(splits, "10%") == round(0.1 * len(all_labels))

    # 100 images, batch 32: 3 steps per epoch; 7 steps are epochs of 3, 3 and 1 step.
    results = tmp_path / "results"
    arguments = ["run", "--strategies", "linear,bitfit", "--seeds", "0,1", "--dataset", "digits", *TINY_ARGS]
    arguments += ["--no-pretrained", "--device", "cpu", "--results-dir", str(results), "--no-download"]
    knobs = ["--train-size", "100", "--batch-size", "32", "--accumulate", "2", "--steps", "7"]
    assert main([*arguments, *knobs, "--warmup-steps", "2", "--lr", "0.01"]) == 0
    table = runs(results)
    assert list(table["status"]) == ["ok"] * 4
    assert list(table["n_train"]) == [100] * 4 and list(table["train_size"]) == ["100"] * 4
    assert list(table["steps"]) == [7] * 4 and list(table["epochs_completed"]) == [3] * 4
    assert table["cell_hash"].nunique() == 2


def test_steps_set_the_schedule_length_and_warm_up(tmp_path):
    sweep(tmp_path, steps=6, warmup_steps=3, lr=0.01)  # one step per epoch: 6 epochs
    history = epochs(tmp_path)
    # The lr recorded after epoch e is that of step e (0-based): warm-up (s + 1) / 3 for steps 0..2, then
    # cosine over steps 3..5: 0.5 (1 + cos(pi (s - 3) / 3)), reaching 0 after the last step.
    expected = [0.01 * factor for factor in (2 / 3, 1.0, 1.0, 0.75, 0.25, 0.0)]
    assert list(history["epoch"]) == [1, 2, 3, 4, 5, 6]
    torch.testing.assert_close(
        torch.tensor(history["lr"]), torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=1e-15
    )


def test_early_stop_ends_training_and_a_rerun_after_the_stop_does_not_train_on(tmp_path):
    def interrupt_after_third(text: str) -> None:
        if "epoch 3/" in text:
            raise KeyboardInterrupt  # killed just after the epoch that triggers the stop was saved

    # An lr this small changes no prediction: validation top-1 never beats epoch 1's.
    sweep(tmp_path, log=interrupt_after_third, epochs=8, lr=1e-12, early_stop=2)
    assert list(runs(tmp_path)["status"]) == ["cancelled"]
    sweep(tmp_path, epochs=8, lr=1e-12, early_stop=2)
    row = runs(tmp_path).query("status == 'ok'").iloc[0]
    assert row["epochs_completed"] == 3 and row["early_stopped"] and row["best_val_epoch"] == 1
    assert row["resumed_from_epoch"] == 3


def test_plateau_lowers_the_lr_and_resumes_exactly(tmp_path):
    def interrupt_after_sixth(text: str) -> None:
        if "epoch 6/" in text:
            raise KeyboardInterrupt

    killed, clean = tmp_path / "killed", tmp_path / "clean"
    # lr 1e-6: too small to lower the validation loss by ReduceLROnPlateau's threshold (relative 1e-4), large
    # enough that a reduction exceeds its eps (1e-8: smaller reductions are skipped).
    flags = {"epochs": 13, "lr": 1e-6, "schedule": "plateau"}
    sweep(killed, log=interrupt_after_sixth, **flags)
    sweep(killed, **flags)
    sweep(clean, **flags)
    # torch's ReduceLROnPlateau defaults: patience 10, factor 0.1. Epoch 1 sets the best validation loss;
    # the 11th epoch in a row without a better one is epoch 12, which lowers the lr.
    expected = [1e-6] * 11 + [1e-7] * 2
    resumed, uninterrupted = epochs(killed), epochs(clean)
    torch.testing.assert_close(
        torch.tensor(resumed["lr"]), torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=0
    )
    torch.testing.assert_close(torch.tensor(resumed["lr"]), torch.tensor(uninterrupted["lr"]), rtol=0, atol=0)
    torch.testing.assert_close(
        torch.tensor(resumed["val_loss"]), torch.tensor(uninterrupted["val_loss"]), rtol=1e-6, atol=0
    )
    row = runs(killed).query("status == 'ok'").iloc[0]
    assert row["resumed_from_epoch"] == 6 and not row["early_stopped"]
