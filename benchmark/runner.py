"""One cell: prepare the strategy's model, train, evaluate, measure. Never branches on a strategy's name.

Strategies that freeze a prefix of the model return it from `split`: the runner then runs that trunk
without autograd and, when the input pipeline is deterministic (no augmentation) and the trunk's
outputs fit the memory budget, computes them once per image and trains the rest on the cache.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import random
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

import strategies
from benchmark.backbone import Backbone
from benchmark.config import RunConfig, TrainParams
from benchmark.data import Splits
from benchmark.distributed import Dist
from benchmark.errors import Diverged
from benchmark.evaluate import Tally
from benchmark.measure import ParamCounts, PeakMemory, Stopwatch
from benchmark.pipeline import Pipeline, epoch_order, steps_per_epoch
from benchmark.store import checkpoint_path

CACHE_FRACTION_OF_FREE_MEMORY = 0.5  # the trunk cache may use at most this share of free device memory


@dataclasses.dataclass
class Outcome:
    row: dict[str, Any]  # outcomes and costs, merged into the run's row by the sweep
    tables: dict[str, pd.DataFrame]  # epochs, classes, confusion
    final_state: dict[str, torch.Tensor]  # the trained parameters, for --keep-weights
    num_classes: int


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def autocast(device: torch.device, precision: str):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def free_memory_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def frozen_forward(trunk: nn.Module | None, batch: torch.Tensor, device: torch.device, precision: str):
    """The frozen trunk's output, without autograd (no activations kept for backward)."""
    if trunk is None:
        return batch
    with torch.no_grad(), autocast(device, precision):
        return trunk(batch)


class Stepper:
    """One optimiser step exactly as the runner takes it (the `speed` command times this too)."""

    def __init__(
        self,
        module: nn.Module,
        trainable: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler,
        clip_grad_norm: float,
        precision: str,
        device: torch.device,
    ) -> None:
        self.module, self.optimizer, self.scheduler = module, optimizer, scheduler
        self.clipped = [param for param in trainable.parameters() if param.requires_grad]
        self.clip_grad_norm, self.precision, self.device = clip_grad_norm, precision, device

    def __call__(self, batch: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with autocast(self.device, self.precision):
            logits = self.module(batch)
        loss = nn.functional.cross_entropy(logits.float(), labels)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.clip_grad_norm > 0:
            nn.utils.clip_grad_norm_(self.clipped, self.clip_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        return loss.detach(), logits.detach()


class Inputs:
    """What the trainable part of the model eats: images through the pipeline (and the frozen trunk,
    without autograd), or trunk outputs cached once per image."""

    def __init__(
        self,
        splits: Splits,
        pipeline: Pipeline,
        trunk: nn.Module | None,
        cfg: RunConfig,
        device: torch.device,
    ) -> None:
        self.splits, self.pipeline, self.trunk = splits, pipeline, trunk
        self.augment, self.precision, self.device = cfg.train.augment, cfg.precision, device
        self.eval_batch_size = cfg.train.eval_batch_size
        self.cache: dict[str, torch.Tensor] = {}

    def _through_trunk(self, images: torch.Tensor, augment: bool, generator: torch.Generator | None):
        return frozen_forward(
            self.trunk,
            self.pipeline(images, augment=augment, generator=generator),
            self.device,
            self.precision,
        )

    def can_cache(self) -> bool:
        if self.trunk is None or self.augment:
            return False
        sample = self._through_trunk(self.splits.train.images[:1], False, None)
        total = sum(len(getattr(self.splits, name)) for name in ("train", "val", "test"))
        needed = sample.numel() * sample.element_size() * total
        return needed <= CACHE_FRACTION_OF_FREE_MEMORY * free_memory_bytes(self.device)

    def build_cache(self, split_name: str) -> None:
        images = getattr(self.splits, split_name).images
        parts = [
            self._through_trunk(images[start : start + self.eval_batch_size], False, None)
            for start in range(0, len(images), self.eval_batch_size)
        ]
        self.cache[split_name] = torch.cat(parts)

    def batch(self, split_name: str, index: torch.Tensor, generator: torch.Generator | None = None):
        if split_name in self.cache:
            return self.cache[split_name][index]
        augment = self.augment and split_name == "train"
        return self._through_trunk(getattr(self.splits, split_name).images[index], augment, generator)


def evaluate(
    forward: Callable,
    inputs: Inputs,
    split_name: str,
    num_classes: int,
    dist: Dist,
    device: torch.device,
    precision: str,
) -> Tally:
    """Every example of the split once; each process takes every world_size-th one, then sums."""
    labels = getattr(inputs.splits, split_name).labels
    tally = Tally.zeros(num_classes, device)
    mine = torch.arange(dist.rank, len(labels), dist.world_size, device=device)
    with torch.no_grad():
        for start in range(0, len(mine), inputs.eval_batch_size):
            index = mine[start : start + inputs.eval_batch_size]
            with autocast(device, precision):
                logits = forward(inputs.batch(split_name, index))
            tally.add(logits.float(), labels[index])
    dist.all_reduce_sum(tally.tensors())
    return tally


def epoch_generators(seed: int, epoch: int, rank: int, device: torch.device):
    """Random streams for one epoch, derived from (seed, epoch) so a resumed run needs no saved state:
    the batch order is the same on every process; the augmentation differs between processes."""

    def generator(*key: int) -> torch.Generator:
        derived = int(np.random.SeedSequence(list(key)).generate_state(1, dtype=np.uint64)[0])
        return torch.Generator(device=device).manual_seed(derived)

    return generator(seed, epoch), generator(seed, epoch, rank + 1)


def lr_factor(step: int, warmup_steps: int, total_steps: int) -> float:
    """Linear warm-up to the peak, then cosine decay to zero; `step` counts from 0."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def make_optimizer(model: nn.Module, train: TrainParams, device: torch.device) -> torch.optim.Optimizer:
    from timm.optim import create_optimizer_v2

    # timm groups parameters so that norms, biases, position embedding and class token get no decay,
    # and skips frozen parameters.
    arguments = {"opt": train.optimizer, "lr": train.lr, "weight_decay": train.weight_decay}
    if device.type == "cuda" and train.optimizer in ("adamw", "adam", "momentum", "sgd"):
        try:  # one fused kernel per step instead of one per parameter tensor
            return create_optimizer_v2(model, **arguments, fused=True)
        except (TypeError, RuntimeError):
            pass
    return create_optimizer_v2(model, **arguments)


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: param.detach().clone() for name, param in model.named_parameters() if param.requires_grad}


@dataclasses.dataclass
class Progress:
    """Everything that an end-of-epoch checkpoint restores."""

    epoch: int = 0  # epochs completed
    history: list[dict[str, float]] = dataclasses.field(default_factory=list)
    best_val_top1: float = -1.0
    best_epoch: int = 0
    best_state: dict[str, torch.Tensor] = dataclasses.field(default_factory=dict)
    train_seconds: float = 0.0
    eval_seconds: float = 0.0
    resumed_from_epoch: int = 0


def save_checkpoint(path, cfg, model, optimizer, scheduler, progress) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "config_hash": cfg.config_hash,
        "model": trainable_state(model),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "progress": dataclasses.asdict(progress),
    }
    if torch.cuda.is_available():
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    temporary = path.parent / f".tmp-{path.name}"
    torch.save(state, temporary)
    temporary.replace(path)


def load_checkpoint(path, cfg, model, optimizer, scheduler) -> Progress:
    if not path.exists():
        return Progress()
    state = torch.load(path, map_location="cpu", weights_only=False)
    if state.get("config_hash") != cfg.config_hash:
        return Progress()
    model.load_state_dict(state["model"], strict=False)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    if "cuda_rng" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    progress = Progress(**state["progress"])
    progress.resumed_from_epoch = progress.epoch
    return progress


def run(
    cfg: RunConfig,
    splits: Splits,
    backbone: Backbone,
    device: torch.device,
    dist: Dist | None = None,
    on_epoch: Callable[[dict], None] | None = None,
    compile_model: bool = False,
) -> Outcome:
    """Train and evaluate one cell. `backbone` is fresh for this run; the seed was set before it was made."""
    dist = dist or Dist()
    strategy = strategies.get(cfg.strategy)(cfg.options)
    model = strategy.prepare(backbone.model).to(device)
    counts = ParamCounts.of(model)
    split = strategy.split(model)
    trunk, trainable = (split.trunk, split.rest) if split else (None, model)
    num_classes = len(splits.class_names)

    memory = PeakMemory(device)
    memory.reset()
    train_watch, eval_watch = Stopwatch(device), Stopwatch(device)
    inputs = Inputs(
        splits,
        Pipeline(backbone.img_size, backbone.mean, backbone.std, device, splits.mirror_invariant),
        trunk,
        cfg,
        device,
    )
    if trunk is not None:
        trunk.eval()  # frozen: dropout off, statistics fixed, so its outputs are deterministic
    cached = inputs.can_cache()
    cache_watch = Stopwatch(device)  # one no-grad pass of the trunk over every image of the run
    if cached:
        with train_watch, cache_watch:
            inputs.build_cache("train")
        with eval_watch, cache_watch:
            inputs.build_cache("val")
            inputs.build_cache("test")

    device_ids = [device.index] if device.type == "cuda" else None
    train_module = DistributedDataParallel(trainable, device_ids=device_ids) if dist.enabled else trainable
    if compile_model:
        train_module = torch.compile(train_module)
    optimizer = make_optimizer(model, cfg.train, device)
    steps = steps_per_epoch(len(splits.train), cfg.train.batch_size)
    total_steps, warmup_steps = (
        cfg.train.epochs * steps,
        round(cfg.train.warmup_epochs * steps),
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, warmup_steps, total_steps)
    )
    ckpt = checkpoint_path(cfg.results_dir, cfg.config_hash)
    progress = load_checkpoint(ckpt, cfg, model, optimizer, scheduler)
    train_watch.seconds += progress.train_seconds
    eval_watch.seconds += progress.eval_seconds

    step = Stepper(
        train_module, trainable, optimizer, scheduler, cfg.train.clip_grad_norm, cfg.precision, device
    )

    def train_epoch() -> tuple[float, float]:
        trainable.train()
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        correct = torch.zeros((), dtype=torch.int64, device=device)
        seen = 0
        labels = splits.train.labels
        order, augmentation = epoch_generators(cfg.seed, progress.epoch, dist.rank, device)
        for index in epoch_order(len(labels), cfg.train.batch_size, order, dist.rank, dist.world_size):
            loss, logits = step(inputs.batch("train", index, augmentation), labels[index])
            # Accumulated on the device: no host synchronisation inside the loop.
            loss_sum += loss.double() * len(index)
            correct += (logits.argmax(1) == labels[index]).sum()
            seen += len(index)
        totals = [loss_sum, correct, torch.tensor(seen, device=device)]
        dist.all_reduce_sum(totals)
        return float(totals[0]) / float(totals[2]), float(totals[1]) / float(totals[2])

    for epoch in range(progress.epoch, cfg.train.epochs):
        with train_watch:
            seconds_before = train_watch.seconds
            train_loss, train_top1 = train_epoch()
        if not math.isfinite(train_loss):
            raise Diverged(f"non-finite training loss in epoch {epoch + 1}")
        with eval_watch:
            trainable.eval()
            val = evaluate(trainable, inputs, "val", num_classes, dist, device, cfg.precision)
        progress.epoch = epoch + 1
        record = {
            "epoch": epoch + 1,
            "train_loss": train_loss,
            "train_top1": train_top1,
            "val_loss": val.loss,
            "val_top1": val.top1,
            "lr": scheduler.get_last_lr()[0],
            "train_seconds": train_watch.seconds - seconds_before,
        }
        progress.history.append(record)
        if val.top1 > progress.best_val_top1:
            progress.best_val_top1, progress.best_epoch = val.top1, epoch + 1
            progress.best_state = {name: tensor.cpu() for name, tensor in trainable_state(model).items()}
        progress.train_seconds, progress.eval_seconds = train_watch.seconds, eval_watch.seconds
        if dist.is_main:
            save_checkpoint(ckpt, cfg, model, optimizer, scheduler, progress)
        if on_epoch:
            on_epoch(record)

    with eval_watch:
        trainable.eval()
        test = evaluate(trainable, inputs, "test", num_classes, dist, device, cfg.precision)
        final_state = trainable_state(model)
        test_at_best = test
        if progress.best_epoch != cfg.train.epochs:
            model.load_state_dict(progress.best_state, strict=False)
            test_at_best = evaluate(trainable, inputs, "test", num_classes, dist, device, cfg.precision)
    peak_bytes = memory.peak_bytes()

    # Every optimiser step sees the global batch: per-process share times the number of processes.
    images_per_step = min(cfg.train.batch_size, len(splits.train)) // dist.world_size * dist.world_size
    trained_images = cfg.train.epochs * steps * images_per_step
    row = {
        "test_top1": test.top1,
        "test_top5": test.top5,
        "test_loss": test.loss,
        "test_macro_f1": test.macro_f1(),
        "test_top1_at_best_val": test_at_best.top1,
        "best_val_top1": progress.best_val_top1,
        "best_val_epoch": progress.best_epoch,
        "final_val_top1": progress.history[-1]["val_top1"],
        "epochs_completed": progress.epoch,
        "resumed_from_epoch": progress.resumed_from_epoch,
        "trainable_params": counts.trainable,
        "trainable_params_excluding_head": counts.trainable_excluding_head,
        "head_params": counts.head,
        "total_params": counts.total,
        "trainable_fraction": counts.trainable / counts.total,
        "train_seconds": train_watch.seconds,
        "eval_seconds": eval_watch.seconds,
        "train_images_per_second": trained_images / max(train_watch.seconds, 1e-9),
        "peak_memory_bytes": peak_bytes,
        "memory_kind": memory.kind,
        "trunk_cached": cached,
        "trunk_cache_seconds": cache_watch.seconds,
        "compiled": compile_model,
        "trunk_frozen": trunk is not None,
        "img_size": backbone.img_size,
    }
    tables = {
        "epochs": pd.DataFrame(progress.history),
        "classes": pd.DataFrame(
            {
                "class_index": range(num_classes),
                "class_name": splits.class_names,
                "accuracy": test.per_class_accuracy(),
                "support": test.confusion.sum(dim=1).cpu().numpy(),
            }
        ),
        "confusion": _confusion_long(test.confusion),
    }
    return Outcome(row, tables, {name: tensor.cpu() for name, tensor in final_state.items()}, num_classes)


def _confusion_long(confusion: torch.Tensor) -> pd.DataFrame:
    matrix = confusion.cpu().numpy()
    true, predicted = np.nonzero(matrix)
    return pd.DataFrame({"true_index": true, "predicted_index": predicted, "count": matrix[true, predicted]})


def fresh_copy(backbone: Backbone) -> Backbone:
    return dataclasses.replace(backbone, model=copy.deepcopy(backbone.model))
