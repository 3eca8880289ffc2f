"""One cell: prepare the strategy's model, train, select on validation, evaluate, measure.

The loop reads top to bottom: set-up, epochs (train, validate, keep the best, checkpoint; stop early
when validation stops improving), the validation-selected model's test evaluation, outcome. It never
branches on a strategy's name: what a method needs of the loop comes through the strategy's hooks
(`split`, `extra_loss`, `on_step_end`, `extra_state`).
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from benchmark.config import RunConfig
from benchmark.data.batches import Pipeline, epoch_order
from benchmark.data.datasets import Splits, train_subset
from benchmark.errors import Diverged
from benchmark.train import checkpoint
from benchmark.train.distributed import Dist
from benchmark.train.inputs import Inputs, SharedTrunkOutputs, TrunkOutputs, evaluate
from benchmark.train.measure import PeakMemory, Stopwatch
from benchmark.train.metrics import Tally
from benchmark.train.prepare import Prepared, prepare_model
from benchmark.train.step import (
    Stepper,
    StepPlan,
    augmentation_generator,
    make_optimizer,
    make_scheduler,
    order_generator,
)
from benchmark.weights.backbone import Backbone


@dataclasses.dataclass
class Outcome:
    row: dict[str, Any]  # outcomes and costs, merged into the run's row by the sweep
    tables: dict[str, pd.DataFrame]  # epochs, classes, confusion
    final_state: dict[str, torch.Tensor]  # the validation-selected model's trained state, for --keep-weights
    num_classes: int


@dataclasses.dataclass
class Watches:
    train: Stopwatch  # training steps (a cached trunk's pass is charged apart: Inputs.features)
    eval: Stopwatch

    @classmethod
    def on(cls, device: torch.device) -> Watches:
        return cls(Stopwatch(device), Stopwatch(device))


def run(
    cfg: RunConfig,
    splits: Splits,
    backbone: Backbone,
    device: torch.device,
    checkpoint_file: Path,
    dist: Dist | None = None,
    on_epoch: Callable[[dict], None] | None = None,
    compile_model: bool = False,
    shared_trunks: SharedTrunkOutputs | None = None,
    log: Callable[[str], None] = print,
) -> Outcome:
    """Train and evaluate one cell. `backbone` is fresh for this run; the seed was set before it was made.
    `checkpoint_file` is where the run's end-of-epoch state is kept (and resumed from: the sweep names it);
    `shared_trunks` holds frozen trunks' outputs from earlier cells of the sweep."""
    dist, train, num_classes = dist or Dist(), cfg.train, len(splits.class_names)
    splits = train_subset(splits, train.train_size)
    # Reset before the model reaches the device: on GPU the peak counts from what was allocated here.
    memory, watches = PeakMemory(device), Watches.on(device)
    memory.reset()
    prepared = prepare_model(cfg.strategy, cfg.options, backbone.model)
    prepared.model.to(device)
    pipeline = Pipeline(backbone.img_size, backbone.mean, backbone.std, device, splits.mirror_invariant)
    inputs = Inputs(
        splits, pipeline, prepared.trunk, train.augment, cfg.precision, cfg.eval_batch_size, device
    )
    cached = inputs.cache_trunk_outputs(shared_trunks)
    module = _wrap(prepared.trainable, dist, device, compile_model)
    optimizer = make_optimizer(prepared.model, train, device, prepared.strategy)
    plan = StepPlan.of(train, len(splits.train))
    scheduler = make_scheduler(optimizer, plan.warmup_steps, plan.total_steps, train.schedule)
    step = Stepper(module, prepared, optimizer, scheduler, train, cfg.precision, device, plan.total_steps)
    ckpt = checkpoint_file
    progress = checkpoint.load(ckpt, cfg.config_hash, prepared, optimizer, scheduler, log)
    watches.train.seconds += progress.train_seconds
    watches.eval.seconds += progress.eval_seconds

    loop = _Loop(
        cfg, prepared, inputs, step, optimizer, scheduler, watches, ckpt, progress, dist, num_classes
    )
    _train_epochs(loop, plan, on_epoch)

    last, test = _test(loop)
    steps_taken = plan.steps_until(progress.epoch)
    # Images through the whole model, trunk included: a cached trunk saw each training image once.
    trained_images = (
        len(splits.train)
        if inputs.features is not None
        else steps_taken * _images_per_step(train.batch_size, len(splits.train), dist)
    )
    row = (
        _outcome_columns(test, progress)
        | {"test_top1_last_epoch": last.top1, "early_stopped": progress.epoch < plan.epochs}
        | _cost_columns(prepared, watches, memory, trained_images, inputs.features)
        | {"trunk_cached": bool(cached), "trunk_cache_reused": cached == "reused"}
        | {"compiled": compile_model}
    )
    return Outcome(row, _detail_tables(progress, test, splits.class_names), progress.best_state, num_classes)


@dataclasses.dataclass
class _Loop:
    """What the epochs of one run share."""

    cfg: RunConfig
    prepared: Any
    inputs: Inputs
    step: Stepper
    optimizer: torch.optim.Optimizer
    scheduler: Any
    watches: Watches
    ckpt: Path
    progress: Any
    dist: Dist
    num_classes: int


def _train_epochs(loop: _Loop, plan: StepPlan, on_epoch: Callable[[dict], None] | None) -> None:
    """The epochs left (all of them, or those after a resumed checkpoint's), each validated and
    checkpointed; the validation-selected state is kept in `loop.progress`."""
    cfg, prepared, progress, watches, ckpt = loop.cfg, loop.prepared, loop.progress, loop.watches, loop.ckpt
    train = cfg.train
    for epoch in range(progress.epoch + 1, plan.epochs + 1):
        if _stops_early(progress, train.early_stop):  # checked first: a resumed run may have stopped
            break
        # A checkpoint that loads but makes the run fail is set aside: it cannot block the cell forever.
        with watches.train, checkpoint.resumed(ckpt, progress):
            seconds_before = watches.train.seconds
            train_loss, train_top1 = _train_epoch(
                loop.step, loop.inputs, cfg, epoch, loop.dist, plan.steps_in(epoch)
            )
        if not math.isfinite(train_loss):
            raise Diverged(f"non-finite training loss in epoch {epoch}")
        with watches.eval, checkpoint.resumed(ckpt, progress):
            prepared.trainable.eval()
            val = evaluate(prepared.trainable, loop.inputs, "val", loop.num_classes, loop.dist)
        loop.scheduler.validated(val.loss)
        record = {
            "epoch": epoch,
            "train_loss": train_loss,
            "train_top1": train_top1,
            "val_loss": val.loss,
            "val_top1": val.top1,
            "lr": loop.scheduler.get_last_lr()[0],
            "train_seconds": watches.train.seconds - seconds_before,
        }
        progress.end_epoch(record, val, prepared)
        progress.train_seconds, progress.eval_seconds = watches.train.seconds, watches.eval.seconds
        if loop.dist.is_main:
            checkpoint.save(ckpt, cfg.config_hash, prepared, loop.optimizer, loop.scheduler, progress)
        if on_epoch:
            on_epoch(record)


def _test(loop: _Loop) -> tuple[Tally, Tally]:
    """(last epoch's test tally, reported apart; the validation-selected model's test tally). The run's
    model becomes the validation-selected one: every test number of the row is of it."""
    prepared, progress = loop.prepared, loop.progress
    with loop.watches.eval, checkpoint.resumed(loop.ckpt, progress):
        prepared.trainable.eval()
        last = evaluate(prepared.trainable, loop.inputs, "test", loop.num_classes, loop.dist)
        prepared.model.load_state_dict(progress.best_state, strict=False)
        if progress.best_epoch == progress.epoch:
            return last, last
        return last, evaluate(prepared.trainable, loop.inputs, "test", loop.num_classes, loop.dist)


def _wrap(trainable: nn.Module, dist: Dist, device: torch.device, compile_model: bool) -> nn.Module:
    device_ids = [device.index] if device.type == "cuda" else None
    module = DistributedDataParallel(trainable, device_ids=device_ids) if dist.enabled else trainable
    return torch.compile(module) if compile_model else module


def _stops_early(progress: checkpoint.Progress, patience: int) -> bool:
    """`patience` validations (one per epoch) in a row without a better validation top-1; 0 is off."""
    return patience > 0 and progress.epoch - progress.best_epoch >= patience


def _train_epoch(
    step: Stepper, inputs: Inputs, cfg: RunConfig, epoch: int, dist: Dist, steps: int
) -> tuple[float, float]:
    """Mean training loss and accuracy over the epoch's first `steps` batches, summed over processes."""
    device, labels = inputs.device, inputs.splits.train.labels
    step.prepared.trainable.train()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    seen = 0
    order = order_generator(cfg.seed, epoch - 1)
    augmentation = augmentation_generator(cfg.seed, epoch - 1, dist.rank)
    batches = epoch_order(len(labels), cfg.train.batch_size, order, dist.rank, dist.world_size, device)
    for index in batches[:steps]:
        loss, logits = step(inputs.batch("train", index, augmentation), labels[index])
        # Accumulated on the device: no host synchronisation inside the loop.
        loss_sum += loss.double() * len(index)
        correct += (logits.argmax(1) == labels[index]).sum()
        seen += len(index)
    totals = [loss_sum, correct, torch.tensor(seen, device=device)]
    dist.all_reduce_sum(totals)
    return float(totals[0]) / float(totals[2]), float(totals[1]) / float(totals[2])


def _images_per_step(batch_size: int, train_images: int, dist: Dist) -> int:
    """Every optimiser step sees the global batch: per-process share times the number of processes."""
    return min(batch_size, train_images) // dist.world_size * dist.world_size


# The metrics a Tally gives, under the row's column names.
TEST_METRICS: dict[str, Callable[[Tally], float]] = {
    "test_top1": lambda tally: tally.top1,
    "test_top5": lambda tally: tally.top5,
    "test_loss": lambda tally: tally.loss,
    "test_macro_f1": lambda tally: tally.macro_f1(),
}


def _outcome_columns(test: Tally, progress: checkpoint.Progress) -> dict[str, Any]:
    return {name: metric(test) for name, metric in TEST_METRICS.items()} | {
        "best_val_top1": progress.best_val_top1,
        "best_val_epoch": progress.best_epoch,
        "final_val_top1": progress.history[-1]["val_top1"],
        "epochs_completed": progress.epoch,
        "resumed_from_epoch": progress.resumed_from_epoch,
    }


def _cost_columns(
    prepared: Prepared,
    watches: Watches,
    memory: PeakMemory,
    trained_images: int,
    features: TrunkOutputs | None,
) -> dict:
    """Costs that mean the same in every cell: a cached trunk's pass is charged to every cell that uses its
    outputs (its training split to training, the others to evaluation), computed here or reused."""
    counts = prepared.counts
    seconds = features.seconds if features is not None else {}
    train_seconds = watches.train.seconds + seconds.get("train", 0.0)
    eval_seconds = watches.eval.seconds + seconds.get("val", 0.0) + seconds.get("test", 0.0)
    return {
        "trainable_params": counts.trainable,
        "trainable_params_excluding_head": counts.trainable_excluding_head,
        "effective_params": prepared.strategy.effective_params(prepared.model),
        "head_params": counts.head,
        "total_params": counts.total,
        "trainable_fraction": counts.trainable / counts.total,
        "train_seconds": train_seconds,
        "eval_seconds": eval_seconds,
        "train_images_per_second": trained_images / max(train_seconds, 1e-9),
        "peak_memory_bytes": memory.peak_bytes(),
        "memory_kind": memory.kind,
        "feature_seconds": sum(seconds.values()),
        "trunk_cache_bytes": features.nbytes if features is not None else 0,
        "trunk_frozen": prepared.trunk is not None,
    }


def _detail_tables(
    progress: checkpoint.Progress, test: Tally, class_names: list[str]
) -> dict[str, pd.DataFrame]:
    matrix = test.confusion.cpu().numpy()
    true, predicted = np.nonzero(matrix)
    return {
        "epochs": pd.DataFrame(progress.history),
        "classes": pd.DataFrame(
            {
                "class_index": range(len(class_names)),
                "class_name": class_names,
                "accuracy": test.per_class_accuracy(),
                "support": matrix.sum(axis=1),
            }
        ),
        "confusion": pd.DataFrame(
            {"true_index": true, "predicted_index": predicted, "count": matrix[true, predicted]}
        ),
    }


def fresh_copy(backbone: Backbone) -> Backbone:
    return dataclasses.replace(backbone, model=copy.deepcopy(backbone.model))
