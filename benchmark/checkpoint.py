"""The end-of-epoch state of an unfinished run, so that a rerun continues where it stopped."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from benchmark.evaluate import Tally
from benchmark.prepare import Prepared


@dataclasses.dataclass
class Progress:
    """Everything that an end-of-epoch checkpoint restores."""

    epoch: int = 0  # epochs completed
    history: list[dict[str, float]] = dataclasses.field(default_factory=list)
    best_val_top1: float = -1.0
    best_epoch: int = 0
    best_state: dict[str, torch.Tensor] = dataclasses.field(default_factory=dict)  # the selected model
    train_seconds: float = 0.0
    eval_seconds: float = 0.0
    resumed_from_epoch: int = 0

    def end_epoch(self, record: dict[str, float], val: Tally, prepared: Prepared) -> None:
        """Record the epoch; keep the model if validation improved (selection never looks at test)."""
        self.epoch = int(record["epoch"])
        self.history.append(record)
        if val.top1 > self.best_val_top1:
            self.best_val_top1, self.best_epoch = val.top1, self.epoch
            self.best_state = prepared.state()


def save(path: Path, config_hash: str, prepared: Prepared, optimizer, scheduler, progress: Progress) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "config_hash": config_hash,
        "model": prepared.state(),
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


def load(path: Path, config_hash: str, prepared: Prepared, optimizer, scheduler) -> Progress:
    """The saved progress, restored into the model, optimiser and schedule; a fresh start if none fits."""
    if not path.exists():
        return Progress()
    state = torch.load(path, map_location="cpu", weights_only=False)
    if state.get("config_hash") != config_hash:
        return Progress()
    prepared.model.load_state_dict(state["model"], strict=False)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    if "cuda_rng" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    progress = Progress(**state["progress"])
    progress.resumed_from_epoch = progress.epoch
    return progress
