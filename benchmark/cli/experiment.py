"""The `run` command's one typed configuration, `Experiment`: each field is a flag of `run` and a key of
experiment files, declared once here.

`add_flags` generates the flags from the fields (the training hyper-parameters from `TrainParams`'s, so a
new hyper-parameter needs no edit here); `cli.experiment_file` loads a YAML file straight into the same
keys and merges the command line over it; `sweep_spec` turns an Experiment into the sweep's `SweepSpec`.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import typing
from pathlib import Path
from typing import Any

import strategies
from benchmark.config import PRECISIONS, TRAIN_KEYS, TrainParams, strategy_class
from benchmark.data import datasets
from benchmark.errors import UsageError
from benchmark.limits import check_img_size, check_seeds
from benchmark.parsing import int_list, key_values, shard
from benchmark.sweep.launch import DEFAULT_TIME_MIN, LAUNCHERS

DEFAULT_MODEL = "vit_base_patch16_224.augreg_in21k"
GPU_EVAL_BATCH, CPU_EVAL_BATCH = 512, 64  # images per evaluation (and trunk-caching) batch


def setting(default: Any, help: str, **flag: Any) -> Any:
    """A field of `Experiment` and its flag. `flag` may hold `choices`, `metavar`, `pairs=True` (a
    repeatable KEY=VALUE flag: a mapping in a file), `speed=True` (`speed` has the flag too),
    `in_file=False` (run control: never read from a file) and `stored=False` (how this invocation runs,
    not what it runs: left out of the stored configuration)."""
    metadata = {"help": help, "speed": False, "in_file": True, "stored": True} | flag
    if isinstance(default, list):  # repeatable KEY=VALUE flags start empty
        return dataclasses.field(default_factory=list, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass(frozen=True)
class Experiment:
    """Everything a `run` is asked: what to train (stored as the sweep's configuration) and how this
    invocation runs it. Values are as the command line writes them; `sweep_spec` parses and checks them."""

    # Shared with `speed`
    strategies: str = setting("all", "comma-separated names, or 'all' (default)", speed=True)
    model: str = setting(DEFAULT_MODEL, "a timm model name (default {default})", speed=True)
    model_arg: list[str] = setting(
        [],
        "passed to timm.create_model, e.g. depth=4; repeatable",
        metavar="KEY=VALUE",
        pairs=True,
        speed=True,
    )
    img_size: int | None = setting(None, "input resolution in pixels (default: the model's)", speed=True)
    device: str = setting("auto", "auto (default), cpu, cuda or cuda:N", speed=True)
    precision: str = setting(
        "auto", "auto (default): bf16 autocast on GPU, fp32 on CPU", choices=PRECISIONS, speed=True
    )
    compile: bool = setting(False, "torch.compile the trained module (slow start)", speed=True)
    results_dir: Path = setting(Path("results"), "default results", speed=True)
    # What to train
    config: Path | None = setting(
        None,
        "an experiment file: YAML keys are these flags' names (lr, batch_size, set, search, ...), plus "
        "lists under datasets, models, train_sizes (one sweep each); flags given here win over the file",
        metavar="FILE.yaml",
        in_file=False,
    )
    dataset: str = setting("cifar10", f"one of {', '.join(datasets.DATASETS.names())}")
    weights: str = setting(
        "hub",
        "'hub' (default), a local .safetensors/.pth/.bin/.npz file, a save_pretrained folder, "
        "or hf:OWNER/NAME[@REVISION]",
    )
    no_pretrained: bool = setting(False, "random initialisation for every strategy")
    set: list[str] = setting(
        [],
        "a strategy's option or training hyper-parameter, e.g. lora.r=16; repeatable",
        metavar="STRATEGY.KEY=VALUE",
        pairs=True,
    )
    # The TrainParams fields given (flags generated from TrainParams, see `keys`); the rest: each strategy's
    train: dict[str, Any] = dataclasses.field(default_factory=dict, metadata={"train": True})
    eval_batch_size: int | None = setting(
        None,
        f"images per evaluation batch (default {GPU_EVAL_BATCH} on GPU, {CPU_EVAL_BATCH} on CPU); "
        "changes speed, never results",
    )
    seeds: str = setting("0", "comma-separated seeds (default 0)")
    search: list[str] = setting(
        [],
        "search this hyper-parameter or option (lr, weight_decay, lora.r, ...) on validation with the "
        "first seed, then run the best point with every seed; 'default': each strategy's own grid; repeatable",
        metavar="KEY=V1,V2,...",
        pairs=True,
    )
    val_fraction: float | None = setting(None, "share of the training set held out for validation")
    data_dir: Path = setting(Path("data"), "dataset cache (default data)")
    no_download: bool = setting(False, "fail instead of downloading a missing dataset")
    keep_weights: bool = setting(False, "save each run's selected model under RESULTS_DIR/weights")
    # How this invocation runs: results already there, what it writes and shows, where it runs
    force: bool = setting(False, "rerun cells that already have a successful row", stored=False)
    stale: str = setting(
        "refuse",
        "cells whose results are of another code version or torch/timm/peft major.minor: refuse to run "
        "(default), rerun them (the new rows supersede the old), or keep the old results as done",
        choices=("refuse", "rerun", "keep"),
        stored=False,
    )
    shard: str = setting("0/1", "I/N: run every N-th cell starting at I (default 0/1)", stored=False)
    dry_run: bool = setting(False, "print the plan with parameter counts; write nothing", in_file=False)
    json: bool = setting(False, "with --dry-run: the plan as JSON on stdout", in_file=False)
    verbose: bool = setting(
        False,
        "a line for every epoch (default: a live display on a terminal, a few lines per run when piped)",
        in_file=False,
    )
    log: str | None = setting(
        None,
        "comma-separated: tensorboard (default: event files in RESULTS_DIR/tb), wandb, mlflow, or none",
        metavar="SINKS",
        stored=False,
    )
    mlflow_uri: str | None = setting(
        None, "with --log mlflow: the tracking URI (default sqlite:///RESULTS_DIR/mlflow.db)", stored=False
    )
    launcher: str | None = setting(
        None,
        "submit the sweep with submitit: a Slurm job array, or local processes (one GPU each)",
        choices=LAUNCHERS,
        stored=False,
    )
    workers: int | None = setting(
        None, "with --launcher: tasks that share the sweep (default 1)", stored=False
    )
    slurm_partition: str | None = setting(None, "Slurm partition (default: the cluster's)", stored=False)
    slurm_gpus: int | None = setting(None, "GPUs per task (default 1; 0 with --device cpu)", stored=False)
    slurm_cpus: int | None = setting(None, "CPUs per task (default: the cluster's)", stored=False)
    slurm_time: str | None = setting(
        None,
        f"time limit per task: minutes, HH:MM:SS or D-HH:MM (default {DEFAULT_TIME_MIN})",
        stored=False,
    )
    slurm_extra: list[str] = setting(
        [],
        "any other sbatch option, e.g. account=myproj, qos=high, mem=64G; repeatable",
        metavar="KEY=VALUE",
        pairs=True,
        stored=False,
    )


@dataclasses.dataclass(frozen=True)
class Key:
    """One key of an experiment: a field of `Experiment`, or a training hyper-parameter."""

    name: str
    kind: str  # "value", "flag" (true when given), "switch" (--x / --no-x) or "append" (repeatable)
    type: type  # of a "value": int, float, Path or str
    default: Any
    help: str
    choices: tuple | None = None
    metavar: str | None = None
    pairs: bool = False  # a repeatable KEY=VALUE flag: a mapping in a file ({r: 16} for r=16)
    speed: bool = False
    in_file: bool = True
    stored: bool = True

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


def _base(hint: Any) -> Any:
    """`int | None` -> int; `list[str]` -> list; any other type as it is."""
    inner = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    if typing.get_origin(hint) is list:
        return list
    return inner[0] if len(inner) == 1 else hint


def _field_key(field: dataclasses.Field, hint: Any) -> Key:
    base = _base(hint)
    kind = {bool: "flag", list: "append"}.get(base, "value")
    default = () if kind == "append" else field.default  # a Key is shared (keys() is cached): nothing mutable
    return Key(field.name, kind, base, default, **field.metadata)


def train_defaults() -> dict[str, Any]:
    """TrainParams' defaults, read off its fields: TrainParams() would check its optimizer against
    timm's list, which imports torch, and `--help` and `list` answer without it."""
    return {field.name: field.default for field in dataclasses.fields(TrainParams)}


def _train_keys() -> list[Key]:
    """One key per training hyper-parameter, typed as TrainParams' default; unset leaves the strategy's."""
    defaults = train_defaults()
    keys = []
    for name in TRAIN_KEYS:
        if name == "augment":
            keys.append(
                Key(name, "switch", bool, None, "random crop and flip (default: the strategy's choice)")
            )
        else:
            keys.append(
                Key(name, "value", type(defaults[name]), None, "default: the strategy's (see 'list')")
            )
    return keys


@functools.cache  # read off the dataclass once per process
def keys() -> tuple[Key, ...]:
    """Every key of `run`, in the order of its flags."""
    hints = typing.get_type_hints(Experiment)
    found: list[Key] = []
    for field in dataclasses.fields(Experiment):
        found += _train_keys() if field.metadata.get("train") else [_field_key(field, hints[field.name])]
    return tuple(found)


def add_flags(parser: argparse.ArgumentParser, only_speed: bool = False, model: str | None = None) -> None:
    """The flags of `run` (or the ones `speed` shares, with its own default `model`). For `run`, a flag not
    written is left out of the namespace (argparse.SUPPRESS): its value comes from the file or the field's
    default (`experiment_file.sweeps`)."""
    for key in keys():
        if only_speed and not key.speed:
            continue
        default = model if only_speed and key.name == "model" and model else key.default
        text = key.help.replace("{default}", str(default))  # names the default this parser has
        options: dict[str, Any] = {"help": text, "default": default if only_speed else argparse.SUPPRESS}
        if key.kind == "flag":
            options["action"] = "store_true"
        elif key.kind == "switch":
            options["action"] = argparse.BooleanOptionalAction
        elif key.kind == "append":
            options |= {"action": "append", "metavar": key.metavar}
            options["default"] = list(default) if only_speed else argparse.SUPPRESS
        else:
            options |= {"type": None if key.type is str else key.type, "choices": key.choices}
            options |= {"metavar": key.metavar} if key.metavar else {}
        parser.add_argument(key.flag, **options)


def build(values: dict[str, Any]) -> Experiment:
    """An Experiment from flat keys (training hyper-parameters among them); absent keys keep the defaults."""
    train = {name: value for name, value in values.items() if name in TRAIN_KEYS and value is not None}
    rest = {name: value for name, value in values.items() if name not in TRAIN_KEYS}
    return Experiment(**rest, train=train)


def strategy_overrides(pairs: list[str]) -> dict[str, dict[str, Any]]:
    per_strategy: dict[str, dict[str, Any]] = {}
    for key, value in key_values(pairs, "--set").items():
        name, sep, option = key.partition(".")
        if not sep or not option:
            raise UsageError(f"--set takes STRATEGY.KEY=VALUE, e.g. lora.r=16; got '{key}'")
        strategy_class(name)
        per_strategy.setdefault(name, {})[option] = value
    return per_strategy


def strategy_names(text: str) -> list[str]:
    if text == "all":
        return strategies.names()
    chosen = [name.strip() for name in text.split(",") if name.strip()]
    for name in chosen:
        strategy_class(name)
    if not chosen:
        raise UsageError(f"--strategies needs at least one name. Valid: all, {', '.join(strategies.names())}")
    return list(dict.fromkeys(chosen))


def check_names(experiment: Experiment) -> None:
    """The names a sweep is given (strategies, `--set` strategies, dataset), checked without torch."""
    strategy_names(experiment.strategies)
    strategy_overrides(experiment.set)
    datasets.info(experiment.dataset)


def sweep_spec(experiment: Experiment, device=None):
    """The sweep's `SweepSpec`, complete when built: with the torch `device` it runs on, its precision and
    evaluation batch follow from it; without (a launcher that only plans), the defaults."""
    from benchmark.sweep import search
    from benchmark.sweep.plan import SweepSpec

    if experiment.no_pretrained and experiment.weights != "hub":
        raise UsageError("--no-pretrained and --weights contradict each other; give one")
    check_img_size(experiment.img_size)
    datasets.info(experiment.dataset)
    return SweepSpec(
        strategies=strategy_names(experiment.strategies),
        dataset=experiment.dataset,
        model=experiment.model,
        weights="none" if experiment.no_pretrained else experiment.weights,
        img_size=experiment.img_size,
        model_args=key_values(experiment.model_arg, "--model-arg"),
        seeds=check_seeds(int_list(experiment.seeds, "--seeds"), "--seeds"),
        train_flags=dict(experiment.train),
        overrides=strategy_overrides(experiment.set),
        val_fraction=experiment.val_fraction,
        data_dir=experiment.data_dir,
        results_dir=experiment.results_dir,
        shard=shard(experiment.shard),
        search=search.parse(experiment.search),
        **(_device_fields(experiment, device) if device is not None else {}),
    )


def _device_fields(experiment: Experiment, device) -> dict:
    # Large evaluation batches help a GPU; on a CPU, activations of 512 images at 224 px are hundreds of
    # MB per layer and allocating them costs more than it saves (measured: 1.48x slower than batch 64).
    default_eval_batch = CPU_EVAL_BATCH if device.type == "cpu" else GPU_EVAL_BATCH
    batch = default_eval_batch if experiment.eval_batch_size is None else experiment.eval_batch_size
    if batch < 1:
        raise UsageError(f"--eval-batch-size must be at least 1; got {batch}")
    return {
        "device": str(device),
        "eval_batch_size": batch,
        "precision": precision_for(experiment.precision, device),
    }


def precision_for(requested: str, device) -> str:
    """auto: bf16 autocast on a GPU, fp32 on a CPU."""
    return ("bf16" if device.type == "cuda" else "fp32") if requested == "auto" else requested
