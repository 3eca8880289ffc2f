"""One optimiser step, the optimiser, its schedule and step plan, and the random streams of an epoch."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import random

import numpy as np
import torch
from torch import nn

from benchmark.config import TrainParams
from benchmark.data.batches import steps_per_epoch
from benchmark.train.optimizer_groups import parameter_groups
from benchmark.train.prepare import Prepared
from strategies.base import Strategy


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def autocast(device: torch.device, precision: str):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def make_optimizer(
    model: nn.Module, train: TrainParams, device: torch.device, strategy: Strategy | None = None
) -> torch.optim.Optimizer:
    from timm.optim import create_optimizer_v2

    # Frozen parameters are skipped; no vector is decayed; the strategy may set per-parameter lr ratios.
    strategy = strategy or Strategy()

    def groups(module: nn.Module) -> list[dict]:
        return parameter_groups(module, strategy, train.lr, train.weight_decay)

    arguments = {"opt": train.optimizer, "lr": train.lr, "weight_decay": train.weight_decay}
    arguments["param_group_fn"] = groups
    if device.type == "cuda" and train.optimizer in ("adamw", "adam", "momentum", "sgd"):
        try:  # one fused kernel per step instead of one per parameter tensor
            return create_optimizer_v2(model, **arguments, fused=True)
        except (TypeError, RuntimeError):
            pass
    return create_optimizer_v2(model, **arguments)


def lr_factor(step: int, warmup_steps: int, total_steps: int, schedule: str = "cosine") -> float:
    """Linear warm-up to the peak, then cosine decay to zero (or the peak held, for `constant` and for
    `plateau`, whose reductions come on top); `step` counts from 0."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule != "cosine":
        return 1.0
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


class Schedule:
    """The learning rate: per optimiser step (`step`) and, for `plateau`, per validation (`validated`).

    `plateau` is torch's ReduceLROnPlateau on the validation loss with its defaults (factor 0.1, patience
    10, as the Hugging Face Trainer's `reduce_lr_on_plateau`); it starts once the linear warm-up is over,
    and from then on the per-step factor is no longer applied, so it never undoes a reduction.
    """

    def __init__(
        self, optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int, schedule: str = "cosine"
    ) -> None:
        self.warmup_steps, self.last_epoch = warmup_steps, 0  # last_epoch: optimiser steps taken
        self.per_step = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: lr_factor(step, warmup_steps, total_steps, schedule)
        )
        plateau = schedule == "plateau"
        self.plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer) if plateau else None
        self.optimizer = optimizer

    def step(self) -> None:
        if self.plateau is None or self.last_epoch < self.warmup_steps:
            self.per_step.step()
        self.last_epoch += 1

    def validated(self, val_loss: float) -> None:
        if self.plateau is not None and self.last_epoch >= self.warmup_steps:
            self.plateau.step(val_loss)

    def get_last_lr(self) -> list[float]:
        return [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self) -> dict:
        plateau = self.plateau.state_dict() if self.plateau else None
        return {"last_epoch": self.last_epoch, "per_step": self.per_step.state_dict(), "plateau": plateau}

    def load_state_dict(self, state: dict) -> None:
        self.last_epoch = state["last_epoch"]
        self.per_step.load_state_dict(state["per_step"])
        if self.plateau is not None:
            self.plateau.load_state_dict(state["plateau"])


def make_scheduler(
    optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int, schedule: str = "cosine"
) -> Schedule:
    return Schedule(optimizer, warmup_steps, total_steps, schedule)


@dataclasses.dataclass(frozen=True)
class StepPlan:
    """How many optimiser steps a run takes, and in how many epochs."""

    steps_per_epoch: int
    total_steps: int
    warmup_steps: int

    @classmethod
    def of(cls, train: TrainParams, train_images: int) -> StepPlan:
        """From `epochs`/`warmup_epochs`, or from `steps`/`warmup_steps` when `steps` is set."""
        per_epoch = steps_per_epoch(train_images, train.batch_size)
        if train.steps:
            return cls(per_epoch, train.steps, train.warmup_steps)
        return cls(per_epoch, train.epochs * per_epoch, round(train.warmup_epochs * per_epoch))

    @property
    def epochs(self) -> int:
        return math.ceil(self.total_steps / self.steps_per_epoch)

    def steps_in(self, epoch: int) -> int:
        """Optimiser steps of the 1-based `epoch`: all of them, except in a partial last epoch."""
        return min(self.steps_per_epoch, self.total_steps - (epoch - 1) * self.steps_per_epoch)

    def steps_until(self, epochs: int) -> int:
        return min(epochs * self.steps_per_epoch, self.total_steps)


class Stepper:
    """One optimiser step exactly as the runner takes it (the `speed` command times this too)."""

    def __init__(
        self,
        module: nn.Module,
        prepared: Prepared,
        optimizer: torch.optim.Optimizer,
        scheduler,
        train: TrainParams,
        precision: str,
        device: torch.device,
        total_steps: int,
    ) -> None:
        self.module, self.prepared, self.optimizer, self.scheduler = module, prepared, optimizer, scheduler
        self.clipped = [param for param in prepared.trainable.parameters() if param.requires_grad]
        self.clip_grad_norm, self.precision, self.device = train.clip_grad_norm, precision, device
        self.total_steps, self.accumulate = total_steps, train.accumulate

    def __call__(self, batch: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimiser step on the batch; with `accumulate` N, over N micro-batches whose gradients add
        up to the whole batch's (each loss weighted by its share of the batch: 1/N when they are equal).
        `extra_loss` and `on_step_end` run once per optimiser step."""
        strategy = self.prepared.strategy
        self.optimizer.zero_grad(set_to_none=True)
        parts = min(self.accumulate, len(labels))  # a batch may be smaller: the whole split is
        micro = list(zip(batch.tensor_split(parts), labels.tensor_split(parts), strict=True))
        losses, all_logits = [], []
        for number, (inputs, targets) in enumerate(micro, 1):
            last = number == len(micro)
            # DistributedDataParallel: average gradients over processes only with the last backward.
            no_sync = getattr(self.module, "no_sync", None)
            with contextlib.nullcontext() if last or no_sync is None else no_sync():
                with autocast(self.device, self.precision):
                    logits = self.module(inputs)
                loss = nn.functional.cross_entropy(logits.float(), targets) * (len(targets) / len(labels))
                extra = strategy.extra_loss(self.prepared.model) if last else None
                (loss if extra is None else loss + extra).backward()
            losses.append(loss.detach())
            all_logits.append(logits.detach())
        if self.clip_grad_norm > 0:
            nn.utils.clip_grad_norm_(self.clipped, self.clip_grad_norm)
        self.optimizer.step()
        self.scheduler.step()  # its step count is the number of optimiser steps taken, resumes included
        strategy.on_step_end(self.prepared.model, self.scheduler.last_epoch, self.total_steps)
        return torch.stack(losses).sum(), torch.cat(all_logits)


def _derived_generator(device: torch.device, *key: int) -> torch.Generator:
    derived = int(np.random.SeedSequence(list(key)).generate_state(1, dtype=np.uint64)[0])
    return torch.Generator(device=device).manual_seed(derived)


def order_generator(seed: int, epoch: int) -> torch.Generator:
    """The batch order of one epoch, from (seed, epoch) alone: drawn on the CPU, so a seed orders the data
    the same on every device and in every process, and a resumed run needs no saved state."""
    return _derived_generator(torch.device("cpu"), seed, epoch)


def augmentation_generator(seed: int, epoch: int, rank: int) -> torch.Generator:
    """The augmentation stream of one epoch, drawn on the CPU (the draws are moved to the run's device), so
    that a seed augments alike on CPU and GPU and the config hash, which leaves the device out, holds; it
    differs between processes. A few numbers per image: drawing them on the CPU costs nothing measurable."""
    return _derived_generator(torch.device("cpu"), seed, epoch, rank + 1)
