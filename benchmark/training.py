"""One optimiser step, the optimiser and its schedule, and the random streams of an epoch."""

from __future__ import annotations

import math
import random

import numpy as np
import torch
from torch import nn

from benchmark.config import TrainParams
from benchmark.prepare import Prepared


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def autocast(device: torch.device, precision: str):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


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


def lr_factor(step: int, warmup_steps: int, total_steps: int) -> float:
    """Linear warm-up to the peak, then cosine decay to zero; `step` counts from 0."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def make_scheduler(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int):
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, warmup_steps, total_steps)
    )


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
        self.total_steps = total_steps

    def __call__(self, batch: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        strategy = self.prepared.strategy
        with autocast(self.device, self.precision):
            logits = self.module(batch)
        loss = nn.functional.cross_entropy(logits.float(), labels)
        extra = strategy.extra_loss(self.prepared.model)
        self.optimizer.zero_grad(set_to_none=True)
        (loss if extra is None else loss + extra).backward()
        if self.clip_grad_norm > 0:
            nn.utils.clip_grad_norm_(self.clipped, self.clip_grad_norm)
        self.optimizer.step()
        self.scheduler.step()  # its step count is the number of optimiser steps taken, resumes included
        strategy.on_step_end(self.prepared.model, self.scheduler.last_epoch, self.total_steps)
        return loss.detach(), logits.detach()


def _derived_generator(device: torch.device, *key: int) -> torch.Generator:
    derived = int(np.random.SeedSequence(list(key)).generate_state(1, dtype=np.uint64)[0])
    return torch.Generator(device=device).manual_seed(derived)


def order_generator(seed: int, epoch: int) -> torch.Generator:
    """The batch order of one epoch, from (seed, epoch) alone: drawn on the CPU, so a seed orders the data
    the same on every device and in every process, and a resumed run needs no saved state."""
    return _derived_generator(torch.device("cpu"), seed, epoch)


def augmentation_generator(seed: int, epoch: int, rank: int, device: torch.device) -> torch.Generator:
    """The augmentation stream of one epoch, on the run's device; it differs between processes."""
    return _derived_generator(device, seed, epoch, rank + 1)
