"""The end-of-epoch state of an unfinished run, so that a rerun continues where it stopped."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from benchmark.train.metrics import Tally
from benchmark.train.prepare import Prepared

# Imports inside functions stay there: this is a training module, whose code version (results/identity.py)
# hashes its syntax tree, so moving an import would mark every stored result as stale for no change.


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
    """Plain tensors and builtins only, so that `load` can refuse anything else; written like every file
    (temporary name, fsync, rename)."""
    from benchmark.results.store import write_file

    state = {
        "config_hash": config_hash,
        "identity": identity(prepared),
        "model": prepared.state(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "strategy": prepared.strategy.extra_state(prepared.model),
        "torch_rng": torch.get_rng_state(),
        "progress": dataclasses.asdict(progress),
    }
    if torch.cuda.is_available():
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    write_file(path, lambda file: torch.save(state, file))


def load(
    path: Path,
    config_hash: str,
    prepared: Prepared,
    optimizer,
    scheduler,
    warn: Callable[[str], None] = print,
) -> Progress:
    """The saved progress, restored into the model, optimiser and schedule; a fresh start if none fits.

    Loaded with weights_only=True: a planted file cannot run code. A checkpoint that cannot be read or
    restored (truncated, damaged, missing keys, foreign) is renamed to `<name>.unreadable`, named in one
    line given to `warn`, and the cell starts fresh. So does one written by another code version or
    torch/timm/peft major.minor (renamed to `<name>.stale`): half a run trained by other code is no
    resume of this one, and a fresh start costs only time."""
    if not path.exists():
        return Progress()
    fresh = _snapshot(prepared, optimizer, scheduler)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or state.get("config_hash") != config_hash:
            raise ValueError("it is not this cell's checkpoint")
        progress = Progress(**state["progress"])
        _restore(state, prepared, optimizer, scheduler)
    except Exception as error:  # torch, pickle and zip raise many types for a damaged file
        _restore(fresh, prepared, optimizer, scheduler)
        aside = set_aside(path, "unreadable")
        warn(
            f"  warning: checkpoint {path} is unreadable ({_described(error)}); set aside as {aside.name}, "
            "the cell starts fresh"
        )
        return Progress()
    if state.get("identity") != identity(prepared):  # a sound checkpoint, of other code or libraries
        _restore(fresh, prepared, optimizer, scheduler)
        aside = set_aside(path, "stale")
        warn(
            f"  warning: checkpoint {path} was written by {state.get('identity') or 'unrecorded code'}, "
            f"not {identity(prepared)}; set aside as {aside.name}, the cell starts fresh"
        )
        return Progress()
    progress.resumed_from_epoch = progress.epoch
    return progress


def identity(prepared: Prepared) -> str:
    """The code version and library major.minor a checkpoint is written under (benchmark/results/identity.py)."""
    from benchmark.results import identity as identities

    strategy = prepared.strategy.name
    return f"code {identities.code_version(strategy)}, {identities.current_libraries()}"


def _snapshot(prepared: Prepared, optimizer, scheduler) -> dict:
    """The fresh state, to go back to if a checkpoint fails half-way through being restored."""
    return {
        "model": prepared.state(),  # already a copy
        "optimizer": copy.deepcopy(optimizer.state_dict()),
        "scheduler": copy.deepcopy(scheduler.state_dict()),
        "strategy": copy.deepcopy(prepared.strategy.extra_state(prepared.model)),
        "torch_rng": torch.get_rng_state(),
    }


def _restore(state: dict, prepared: Prepared, optimizer, scheduler) -> None:
    prepared.model.load_state_dict(state["model"], strict=False)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    # Required: a checkpoint written before strategies kept their own state is set aside, not half-resumed.
    prepared.strategy.load_extra_state(prepared.model, state["strategy"])
    torch.set_rng_state(state["torch_rng"])
    if "cuda_rng" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])


def set_aside(path: Path, reason: str) -> Path:
    """Rename `path` to `<name>.<reason>` (kept for a post-mortem, never read again) and return the new path."""
    aside = path.with_name(f"{path.name}.{reason}")
    with contextlib.suppress(FileNotFoundError):  # under DDP, another process may have moved it
        path.replace(aside)
    return aside


def _described(error: BaseException) -> str:
    return f"{type(error).__name__}: {' '.join(str(error).split())[:160]}"


class ResumeFailed(RuntimeError):
    """A run resumed from a checkpoint failed before it completed an epoch of its own."""


@contextlib.contextmanager
def resumed(path: Path, progress: Progress) -> Iterator[None]:
    """Around the training and evaluation of a run that may have resumed from `path`.

    A checkpoint can load and still make the run fail (state that a strategy kept outside it, a shape
    that only the optimiser's step checks). Until the resumed run completes an epoch (and so writes a
    checkpoint of its own), an error in it is blamed on the checkpoint: it is set aside as
    `<name>.unresumable` and the error, re-raised as ResumeFailed, says so; the cell's row records it as
    failed and a rerun (with or without --force) starts fresh instead of failing the same way forever.
    Divergence and a full disk are answers of their own and pass through unchanged."""
    from benchmark.errors import DiskFull, Diverged

    try:
        yield
    except (Diverged, DiskFull):
        raise
    except Exception as error:
        if not progress.resumed_from_epoch or progress.epoch > progress.resumed_from_epoch:
            raise
        aside = set_aside(path, "unresumable")
        raise ResumeFailed(
            f"resuming from the checkpoint of epoch {progress.resumed_from_epoch} failed ({_described(error)}); "
            f"set aside as {aside.name}, a rerun starts fresh"
        ) from error
