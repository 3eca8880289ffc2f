"""One cell of a sweep (strategy x dataset x model x seed x hyper-parameters), resolved and validated."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import strategies
from benchmark.errors import UsageError
from benchmark.limits import check_float, check_int
from benchmark.parsing import build_dataclass
from benchmark.registry import did_you_mean

PRECISIONS = ("auto", "fp32", "bf16")
SCHEDULES = ("cosine", "constant", "plateau")


@dataclasses.dataclass(frozen=True)
class TrainParams:
    """Training hyper-parameters. A strategy's `defaults` override these; flags override both."""

    epochs: int = 10
    batch_size: int = 128  # images per optimiser step, summed over all processes
    lr: float = 0.003  # peak learning rate after warm-up, used as given: never scaled with batch_size
    optimizer: str = "momentum"  # a timm optimiser name: momentum = SGD, momentum 0.9, no Nesterov
    weight_decay: float = 0.0  # not applied to norms, biases, position embedding and class token
    warmup_epochs: float = 1.0  # linear warm-up, then cosine decay to 0, updated every step
    clip_grad_norm: float = 1.0  # global L2 norm; 0 disables clipping
    augment: bool = True  # random crop (padding 1/8 of the side) and, where the dataset allows, flip
    # Protocols that count optimiser steps (vit_jax's `total_steps`, `warmup_steps`): when `steps` is set,
    # it replaces `epochs` and `warmup_steps` replaces `warmup_epochs`; the last epoch may be partial.
    steps: int = 0  # optimiser steps in total; 0 = unset (train for `epochs`)
    warmup_steps: int = 0  # optimiser steps of linear warm-up, with `steps` only
    accumulate: int = 1  # micro-batches per optimiser step (vit_jax's `accum_steps`); batch_size is unchanged
    train_size: str = ""  # "N" images or "P%" of the training split, class-stratified, fixed; "" = all
    # After warm-up: cosine to 0, constant, or torch's ReduceLROnPlateau on the validation loss
    # (its defaults, as the Hugging Face Trainer's `reduce_lr_on_plateau`: factor 0.1, patience 10 epochs).
    schedule: str = "cosine"
    early_stop: int = 0  # stop after this many validations (epochs) without a better val top-1; 0 = off

    def __post_init__(self) -> None:
        checks = [
            (self.epochs >= 1, f"epochs must be at least 1; got {self.epochs}"),
            (self.batch_size >= 1, f"batch_size must be at least 1; got {self.batch_size}"),
            (self.lr > 0, f"lr must be positive; got {self.lr}"),
            (self.weight_decay >= 0, f"weight_decay must be 0 or more; got {self.weight_decay}"),
            (self.warmup_epochs >= 0, f"warmup_epochs must be 0 or more; got {self.warmup_epochs}"),
            (self.clip_grad_norm >= 0, f"clip_grad_norm must be 0 (off) or more; got {self.clip_grad_norm}"),
            (self.steps >= 0, f"steps must be 0 (unset: use epochs) or more; got {self.steps}"),
            (
                0 <= self.warmup_steps < max(self.steps, 1),
                f"warmup_steps must be 0 or more and less than steps ({self.steps}; warm-up in steps needs "
                f"--steps); got {self.warmup_steps}",
            ),
            (self.accumulate >= 1, f"accumulate must be at least 1; got {self.accumulate}"),
            (
                self.batch_size % max(self.accumulate, 1) == 0,
                f"batch_size ({self.batch_size}) must divide by accumulate ({self.accumulate})",
            ),
            (
                self.schedule in SCHEDULES,
                f"schedule must be one of {', '.join(SCHEDULES)}; got '{self.schedule}'",
            ),
            (self.early_stop >= 0, f"early_stop must be 0 (off) or more validations; got {self.early_stop}"),
        ]
        for ok, message in checks:
            if not ok:
                raise UsageError(message)
        self._check_bounds()
        _check_optimizer(self.optimizer)
        _check_train_size(self.train_size)

    def _check_bounds(self) -> None:
        """Finite, and fits the int64 / float64 columns and the optimiser's float32 arithmetic."""
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.type == "int":
                check_int(value, field.name)
            elif field.type == "float":
                check_float(value, field.name)


def _check_optimizer(name: str) -> None:
    from timm.optim import list_optimizers

    valid = list_optimizers()
    if name not in valid:
        raise UsageError(
            f"unknown optimizer '{name}'.{did_you_mean(name, valid)} Valid include: "
            "sgd, adamw, adam, lamb, lion (see timm.optim.list_optimizers())"
        )


def _check_train_size(text: str) -> None:
    """ "" (all), a whole number of images ("1000"), or a percentage in (0, 100] ("10%")."""
    number = text[:-1] if text.endswith("%") else text
    try:
        value = float(number) if text.endswith("%") else int(number)
    except ValueError:
        value = None
    ok = text == "" or (value is not None and (0 < value <= 100 if text.endswith("%") else value >= 1))
    if not ok:
        raise UsageError(
            f"train_size must be a number of images (e.g. 1000) or a percentage in (0, 100] (e.g. 10%); "
            f"got '{text}'"
        )


TRAIN_KEYS = tuple(field.name for field in dataclasses.fields(TrainParams))


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything that defines one run. `config_hash` covers what changes the result, not where
    files live, which device ran it or how large its evaluation batches were."""

    strategy: str
    options: Any  # the strategy's Options dataclass instance
    dataset: str
    model: str
    model_args: tuple[tuple[str, Any], ...]
    weights: str  # "hub", "none", or the path of a local weights file
    weights_sha256: str  # content hash of a local weights file, "" otherwise
    img_size: int | None
    seed: int
    train: TrainParams
    precision: str
    val_fraction: float
    device: str = "auto"
    eval_batch_size: int = 512  # images per evaluation batch: changes speed, never results
    data_dir: Path = Path("data")
    results_dir: Path = Path("results")

    @property
    def pretrained(self) -> bool:
        return self.weights != "none"

    def semantic(self) -> dict[str, Any]:
        """The fields that decide the outcome, as plain JSON values."""
        return {
            "strategy": self.strategy,
            "options": to_jsonable(dataclasses.asdict(self.options)),
            "dataset": self.dataset,
            "model": self.model,
            "model_args": dict(self.model_args),
            "weights": self.weights_sha256 or self.weights,
            "img_size": self.img_size,
            "seed": self.seed,
            "train": dataclasses.asdict(self.train),
            "precision": self.precision,
            "val_fraction": self.val_fraction,
        }

    @property
    def config_hash(self) -> str:
        canonical = json.dumps(self.semantic(), sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    @property
    def cell_hash(self) -> str:
        """The same as config_hash but without the seed: runs that differ only in seed share it."""
        canonical = json.dumps(self.semantic() | {"seed": None}, sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def to_json(self) -> str:
        full = self.semantic() | {
            "weights": self.weights,
            "weights_sha256": self.weights_sha256,
            "device": self.device,
            "eval_batch_size": self.eval_batch_size,
            "data_dir": str(self.data_dir),
            "results_dir": str(self.results_dir),
        }
        return json.dumps(full, sort_keys=True)


def to_jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: to_jsonable(item) for key, item in value.items()}
    if isinstance(value, (tuple, list)):
        return [to_jsonable(item) for item in value]
    return value


def strategy_class(name: str) -> type[strategies.Strategy]:
    """The registered strategy, or a UsageError naming the valid ones."""
    try:
        return strategies.get(name)
    except ValueError as error:
        raise UsageError(str(error)) from None


def make_train_params(strategy: str, flags: dict[str, Any], overrides: dict[str, Any]) -> TrainParams:
    """Strategy defaults, then command-line flags, then per-strategy `--set STRATEGY.KEY=VALUE`."""
    cls = strategy_class(strategy)
    train = build_dataclass(TrainParams, dict(cls.defaults) | flags | overrides, prefix=f"{strategy}.")
    if train.batch_size < cls.min_batch_size:
        raise UsageError(
            f"{strategy} trains with batches of at least {cls.min_batch_size} images; got batch size "
            f"{train.batch_size}"
        )
    return train


def make_options(strategy: str, values: dict[str, Any]) -> Any:
    """The strategy's options from user input. The one place that names the strategy in an option's message:
    an Options check says `r must be at least 1`, the user reads `lora.r must be at least 1`."""
    prefix = f"{strategy}."
    return build_dataclass(strategy_class(strategy).Options, values, prefix=prefix, error_prefix=prefix)


def split_overrides(strategy: str, values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Separate `--set` values into the strategy's own options and training hyper-parameters."""
    option_keys = {field.name for field in dataclasses.fields(strategy_class(strategy).Options)}
    train = {key: value for key, value in values.items() if key in TRAIN_KEYS and key not in option_keys}
    options = {key: value for key, value in values.items() if key not in train}
    return options, train
