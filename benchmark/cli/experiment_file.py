"""Experiment files: `run --config FILE.yaml` takes, as YAML keys, every key of `Experiment` (`lr`,
`batch_size`, `model_arg`, `set`, `search`, ...), so a flag added to `run` is a valid key without a change
here.

Each value is checked against its key's type and loaded straight into the experiment's keys; the command
line is merged over the file, so a flag given there wins (for repeatable KEY=VALUE flags such as `--set`,
per key). `datasets`, `models` and `train_sizes` take lists and run the product, one sweep each, datasets
outermost, each list in the file's order. The resolved configuration of each sweep is itself an experiment
file (`to_yaml`), stored under RESULTS_DIR/experiments/ when the sweep starts; `--config` on it reruns the
same cells.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import itertools
import json
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from benchmark.cli.experiment import Experiment, Key, build, keys
from benchmark.cli.yaml_file import load
from benchmark.config import TRAIN_KEYS
from benchmark.errors import UsageError
from benchmark.parsing import parse_value, shard
from benchmark.registry import did_you_mean

# A list under the plural key runs one sweep per value, outermost first.
PRODUCT_KEYS = {"datasets": "dataset", "models": "model", "train_sizes": "train_size"}
# Comma-separated flags that a file may also give as a YAML list.
COMMA_LISTS = ("strategies", "seeds")
# A flag given on the command line drops these keys of the file, which would contradict it.
CONTRADICTS = {"no_pretrained": ("weights",), "weights": ("no_pretrained",)}


@dataclasses.dataclass(frozen=True)
class Sweep:
    """One sweep of a `run`: its experiment and its resolved configuration (file keys)."""

    experiment: Experiment
    resolved: dict[str, Any]
    command: list[str]  # the `run` command line as given, --config included


def file_keys() -> dict[str, Key]:
    return {key.name: key for key in keys() if key.in_file}


def valid_keys() -> list[str]:
    found = file_keys()
    return sorted([*found, *(plural for plural, name in PRODUCT_KEYS.items() if name in found)])


def _text(value: Any) -> str:
    """A YAML scalar as a command-line value: booleans as true/false, floats round-trip exactly."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


def _shown(value: Any) -> str:
    return f"'{value}' ({type(value).__name__})"


def _scalar(name: str, value: Any, key: Key) -> Any:
    """One value checked against the key's type and choices, converted as its flag would convert it."""
    kind = key.type if key.type in (int, float) and key.kind == "value" else str
    expected = {int: "an integer", float: "a number", str: "a single value"}[kind]
    ok = isinstance(value, (str, int, float)) and not isinstance(value, bool)
    if ok and kind is int and not isinstance(value, int):
        ok = isinstance(value, str) and value.strip().lstrip("-").isdigit()
    if ok and kind is float and isinstance(value, str):
        try:  # YAML 1.1 reads 3e-4 (no dot) as a string
            float(value)
        except ValueError:
            ok = False
    if not ok:
        raise UsageError(f"key '{name}' must be {expected}; got {_shown(value)}")
    if key.choices is not None and value not in key.choices:
        valid = ", ".join(map(str, key.choices))
        raise UsageError(f"key '{name}' must be one of {valid}; got {_shown(value)}")
    if kind is str:
        return Path(_text(value)) if key.type is Path and key.kind == "value" else _text(value)
    return kind(value)


def _pairs(name: str, value: Any, prefix: str = "") -> list[str]:
    """`{r: 16}` -> ["r=16"]; nested mappings join with a dot (`set: {lora: {r: 16}}` -> "lora.r=16");
    a list is comma-separated (`search: {lr: [1e-4, 3e-4]}` -> "lr=0.0001,0.0003")."""
    if not isinstance(value, dict):
        raise UsageError(f"key '{name}' must be a mapping, e.g. {{name: value}}; got {_shown(value)}")
    pairs = []
    for part, item in value.items():
        if isinstance(item, dict):
            pairs += _pairs(f"{name}.{part}", item, f"{prefix}{part}.")
        elif isinstance(item, list):
            pairs.append(f"{prefix}{part}=" + ",".join(_text(each) for each in item))
        else:
            pairs.append(f"{prefix}{part}={_text(item)}")
    return pairs


def _value(name: str, value: Any, key: Key) -> Any:
    """One file entry as the value its flag would give."""
    if key.kind in ("flag", "switch"):
        if not isinstance(value, bool):
            raise UsageError(f"key '{name}' must be true or false; got {_shown(value)}")
        return value
    if key.kind == "append":
        if isinstance(value, dict) or (key.pairs and not isinstance(value, (str, list))):
            return _pairs(name, value)
        # a word (`search: default`) or a list of them, each as it is
        return [_scalar(name, item, key) for item in (value if isinstance(value, list) else [value])]
    if key.name in COMMA_LISTS and isinstance(value, list):
        return ",".join(_scalar(name, item, key) for item in value)
    return _scalar(name, value, key)


def _check_keys(values: dict[str, Any]) -> None:
    valid = valid_keys()
    for name in values:
        if name not in valid:
            hint = did_you_mean(str(name), valid)
            raise UsageError(f"unknown key '{name}'.{hint} Valid: {', '.join(valid)}")
    for plural, single in PRODUCT_KEYS.items():
        if plural in values and single in values:
            raise UsageError(f"keys '{plural}' and '{single}' both given; give one")
        if plural in values and not (isinstance(values[plural], list) and values[plural]):
            raise UsageError(f"key '{plural}' must be a non-empty list; got {_shown(values[plural])}")


def file_values(path: Path, given: dict[str, Any]) -> list[dict[str, Any]]:
    """The keys of each sweep an experiment file asks for, less those the command line's `given` keys
    replace (a repeatable flag, such as --set, is merged per key instead, by `sweeps`)."""
    values = {name: value for name, value in load(path).items() if value is not None}
    found = file_keys()
    try:
        _check_keys(values)
        replaced = [name for name in given if name in found and found[name].kind != "append"]
        dropped = {each for name in replaced for each in (name, *CONTRADICTS.get(name, ()))}
        axes = {}  # per product key: the values of its sweeps
        fixed: dict[str, Any] = {}
        for name, value in values.items():
            single = PRODUCT_KEYS.get(name, name)
            if single in dropped:
                continue
            if name in PRODUCT_KEYS:
                axes[name] = [
                    {single: _value(f"{name}[{i}]", item, found[single])} for i, item in enumerate(value)
                ]
            else:
                fixed[name] = _value(name, value, found[name])
    except UsageError as error:
        raise UsageError(f"--config {path}: {error}") from None
    ordered = [axes[name] for name in PRODUCT_KEYS if name in axes]  # datasets outermost, then models, sizes
    return [
        fixed | {k: v for part in combo for k, v in part.items()} for combo in itertools.product(*ordered)
    ]


def sweeps(given: dict[str, Any], command: list[str]) -> list[Sweep]:
    """The sweeps of a `run`: the keys `given` on the command line (only those written), over the keys of
    its --config file if any, over the defaults; one sweep per product cell of the file."""
    config = given.get("config")
    appended = {key.name for key in keys() if key.kind == "append"}
    found = []
    for values in [{}] if config is None else file_values(config, given):
        merged = dict(values)
        for name, value in given.items():
            merged[name] = [*merged.get(name, []), *value] if name in appended else value
        experiment = build(merged)
        found.append(Sweep(experiment, resolved(experiment), command))
    return found


def resolved(experiment: Experiment) -> dict[str, Any]:
    """An experiment as file keys: what `--config` needs to run it again. Unset keys (None, an empty list,
    a false flag) and keys of this invocation only (`stored=False`) are left out."""
    out: dict[str, Any] = {}
    for key in keys():
        if not (key.stored and key.in_file):
            continue
        value = experiment.train.get(key.name) if key.name in TRAIN_KEYS else getattr(experiment, key.name)
        if value is None or value == [] or (value is False and key.kind == "flag"):
            continue
        if key.kind == "append" and all("=" in str(item) for item in value):
            value = _nested(value)
        elif isinstance(value, Path):
            value = str(value)
        out[key.name] = value
    return out


def _nested(pairs: list[str]) -> dict[str, Any]:
    """["lora.r=16", "lora.lr=0.001"] -> {"lora": {"r": 16, "lr": 0.001}}; "lr=1e-4,3e-4" -> {"lr": [..]}."""
    tree: dict[str, Any] = {}
    for pair in pairs:
        key, _, text = pair.partition("=")
        *path, leaf = key.strip().split(".")
        node = tree
        for part in path:
            node = node.setdefault(part, {})
        items = [parse_value(item.strip()) for item in text.split(",")]
        node[leaf] = items if "," in text else items[0]
    return tree


def config_hash(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def to_yaml(config: dict[str, Any], header: str) -> str:
    comment = "".join(f"# {line}\n" for line in header.splitlines())
    return comment + yaml.safe_dump(config, sort_keys=True, default_flow_style=False)


@contextlib.contextmanager
def recorded(sweep: Sweep, results_dir: Path, cell_hashes: list[str]) -> Iterator[Path]:
    """Store the sweep's resolved configuration as RESULTS_DIR/experiments/<hash>.yaml while it runs.

    Written before the first cell, so that even a killed run leaves its configuration; taken back if the
    sweep stops on bad input (a UsageError: a missing dataset, unfitting weights), which writes nothing.
    """
    from benchmark.results import store

    digest = config_hash(sweep.resolved)
    path = store.experiment_path(results_dir, digest)
    shards, count = path.with_suffix(".shards"), shard(sweep.experiment.shard)[1]
    _check_shard_count(shards, count)
    header = (
        f"Resolved configuration {digest}: rerun with python -m benchmark run --config {path}\n"
        f"Command: python -m benchmark run {shlex.join(sweep.command)}\n"
        f"Cells (config_hash): {', '.join(cell_hashes)}"
    )
    created = [each for each in (path, shards, *path.parents) if not each.exists()]  # files, then folders
    text = to_yaml(sweep.resolved, header).encode()
    store.write_file(path, lambda file: file.write(text))  # a killed process never leaves half a file
    if count > 1:  # recorded for the other shards of this sweep, which must use the same N
        store.write_file(shards, lambda file: file.write(f"{count}\n".encode()))
    try:
        yield path
    except UsageError:
        for each in created:
            if each.is_file():
                each.unlink()
            elif each.is_dir() and not any(each.iterdir()):
                each.rmdir()
        raise


def _check_shard_count(path: Path, count: int) -> None:
    """Shards of one sweep in one results folder must agree on N: `--shard 0/2` and `--shard 1/3` would
    leave some cells to no shard. The first sharded process records N beside the stored configuration."""
    if count == 1 or not path.exists():
        return  # an unsplit run covers every cell, whatever shards ran before
    recorded_count = int(path.read_text().strip())
    if recorded_count != count:
        raise UsageError(
            f"this sweep is split into {recorded_count} shards in this results folder ({path}); --shard "
            f"I/{count} would leave some cells to no shard: give --shard I/{recorded_count} "
            f"(0 <= I < {recorded_count}), or another --results-dir"
        )
