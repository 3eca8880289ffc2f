"""Experiment files: `run --config FILE.yaml` takes, as YAML keys, everything the `run` command line takes.

A key is a `run` flag's destination (`lr`, `batch_size`, `model_arg`, `set`, `search`, ...): the keys are
read off the parser, so a flag added to `run` later is a valid key without a change here. The file becomes
command-line tokens, the real command line is appended after them and the whole is parsed by the `run`
parser itself, so a flag given on the command line wins over the file (for repeatable KEY=VALUE flags such
as `--set`, per key). `datasets`, `models` and `train_sizes` take lists and run the product, one sweep
each, datasets outermost, each list in the file's order. The resolved configuration of each sweep is
itself an experiment file (`to_yaml`), stored under RESULTS_DIR/experiments/ when the sweep starts;
`--config` on it reruns the same cells.
"""

from __future__ import annotations

import argparse
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

from benchmark.errors import UsageError
from benchmark.parsing import shard
from benchmark.registry import did_you_mean

# Keys that are run control, not part of an experiment: never read from a file.
NOT_IN_FILES = ("help", "config", "dry_run", "json", "verbose")
# Left out of the stored configuration too: they say how this invocation runs, not what it runs.
NOT_STORED = (*NOT_IN_FILES, "force", "stale", "shard", "log", "mlflow_uri", "launcher", "workers")
NOT_STORED += ("slurm_partition", "slurm_gpus", "slurm_cpus", "slurm_time", "slurm_extra")  # launch.py
# A list under the plural key runs one sweep per value, outermost first.
PRODUCT_KEYS = {"datasets": "dataset", "models": "model", "train_sizes": "train_size"}
# Comma-separated flags that a file may also give as a YAML list.
COMMA_LISTS = ("strategies", "seeds")
# A flag given on the command line drops these keys of the file, which would contradict it.
CONTRADICTS = {"no_pretrained": ("weights",), "weights": ("no_pretrained",)}


@dataclasses.dataclass
class Sweep:
    """One sweep of a `run`: its parsed arguments and its resolved configuration (file keys)."""

    args: argparse.Namespace
    resolved: dict[str, Any]
    command: list[str]  # the `run` command line as given, --config included


# Limits on an experiment file, so that no file can exhaust the machine: its size, the nesting of its
# mappings and lists, and no YAML aliases (an alias bomb expands a few lines into billions of nodes).
MAX_FILE_BYTES = 1 << 20  # 1 MiB; the shipped protocols are under 4 KiB
MAX_DEPTH = 16  # nesting of mappings and lists; `set: {lora: {r: 16}}` is 3


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader without aliases, without duplicate keys, and with bounded nesting."""

    depth = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise _FileError(f"YAML aliases (*{event.anchor}) are not allowed", event.start_mark)
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise _FileError(f"nested deeper than {MAX_DEPTH} levels", self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise _FileError(f"duplicate key '{key}'", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


class _FileError(Exception):
    def __init__(self, problem: str, mark) -> None:
        super().__init__(f"{problem} at line {mark.line + 1}" if mark else problem)


def _read_text(path: Path) -> str:
    """The file as UTF-8 text, reading at most MAX_FILE_BYTES + 1 bytes (so /dev/zero ends at once)."""
    try:
        with open(path, "rb") as file:
            raw = file.read(MAX_FILE_BYTES + 1)
    except OSError as error:
        raise UsageError(f"--config {path}: cannot read it ({error.strerror or error})") from None
    if len(raw) > MAX_FILE_BYTES:
        raise UsageError(f"--config {path}: larger than the limit of {MAX_FILE_BYTES:,} bytes")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise UsageError(f"--config {path}: not UTF-8 text (byte {error.start})") from None


def load(path: Path) -> dict[str, Any]:
    """The file's mapping; a missing, unreadable, oversized, non-UTF-8 or non-mapping file, an alias, a
    duplicate key or too deep a nesting is a one-line UsageError."""
    text = _read_text(path)
    try:
        values = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 (a SafeLoader subclass)
    except _FileError as error:
        raise UsageError(f"--config {path}: {error}") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        problem = getattr(error, "problem", None) or type(error).__name__
        raise UsageError(f"--config {path}: not valid YAML{where} ({problem})") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise UsageError(
            f"--config {path}: must be a mapping of keys to values; got a {type(values).__name__}"
        )
    return values


def _actions(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """The file keys the parser accepts: each optional flag's destination."""
    return {
        dest: action
        for dest, action in parser.flags.items()  # recorded by cli.parser.Parser.add_argument
        if action.option_strings and dest not in NOT_IN_FILES
    }


def valid_keys(parser: argparse.ArgumentParser) -> list[str]:
    actions = _actions(parser)
    return sorted([*actions, *(plural for plural, dest in PRODUCT_KEYS.items() if dest in actions)])


def _text(value: Any) -> str:
    """A YAML scalar as a command-line value: booleans as true/false, floats round-trip exactly."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


def _kind(action: argparse.Action | None) -> str:
    if action is None:  # --help, --config: not file keys
        return "other"
    if isinstance(action, argparse.BooleanOptionalAction):
        return "switch"
    if action.nargs == 0:
        return "flag"
    if getattr(action, "repeatable", False):  # set by cli.parser.Parser.add_argument
        return "append"
    return "value"


def _scalar(key: str, value: Any, action: argparse.Action) -> str:
    """Check one value against the flag's type and choices; return it as a command-line token."""
    kind = action.type if action.type in (int, float) else str
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
        raise UsageError(f"key '{key}' must be {expected}; got {_shown(value)}")
    if action.choices is not None and value not in action.choices:
        valid = ", ".join(map(str, action.choices))
        raise UsageError(f"key '{key}' must be one of {valid}; got {_shown(value)}")
    return _text(value)


def _shown(value: Any) -> str:
    return f"'{value}' ({type(value).__name__})"


def _pairs(key: str, value: Any, prefix: str = "") -> list[str]:
    """`{r: 16}` -> ["r=16"]; nested mappings join with a dot (`set: {lora: {r: 16}}` -> "lora.r=16");
    a list is comma-separated (`search: {lr: [1e-4, 3e-4]}` -> "lr=0.0001,0.0003")."""
    if not isinstance(value, dict):
        raise UsageError(f"key '{key}' must be a mapping, e.g. {{name: value}}; got {_shown(value)}")
    pairs = []
    for name, item in value.items():
        if isinstance(item, dict):
            pairs += _pairs(f"{key}.{name}", item, f"{prefix}{name}.")
        elif isinstance(item, list):
            pairs.append(f"{prefix}{name}=" + ",".join(_text(part) for part in item))
        else:
            pairs.append(f"{prefix}{name}={_text(item)}")
    return pairs


def _tokens(key: str, value: Any, action: argparse.Action) -> list[str]:
    """One file entry as the command-line tokens of its flag."""
    flag = action.option_strings[0]
    kind = _kind(action)
    if kind in ("flag", "switch"):
        if not isinstance(value, bool):
            raise UsageError(f"key '{key}' must be true or false; got {_shown(value)}")
        if kind == "flag":
            return [flag] if value else []
        return [flag] if value else ["--no-" + flag[2:]]
    takes_pairs = "=" in str(action.metavar or "")  # KEY=VALUE flags: --set, --model-arg, --search
    if kind == "append" and (isinstance(value, dict) or (takes_pairs and not isinstance(value, (str, list)))):
        return [token for pair in _pairs(key, value) for token in (flag, pair)]
    if kind == "append":  # a word (`search: default`) or a list of them, each given to the flag as it is
        items = value if isinstance(value, list) else [value]
        return [token for item in items for token in (flag, _scalar(key, item, action))]
    if key in COMMA_LISTS and isinstance(value, list):
        return [flag, ",".join(_scalar(key, item, action) for item in value)]
    return [flag, _scalar(key, value, action)]


def _check_keys(values: dict[str, Any], parser: argparse.ArgumentParser) -> None:
    valid = valid_keys(parser)
    for key in values:
        if key not in valid:
            hint = did_you_mean(str(key), valid)
            raise UsageError(f"unknown key '{key}'.{hint} Valid: {', '.join(valid)}")
    for plural, single in PRODUCT_KEYS.items():
        if plural in values and single in values:
            raise UsageError(f"keys '{plural}' and '{single}' both given; give one")
        if plural in values and not (isinstance(values[plural], list) and values[plural]):
            raise UsageError(f"key '{plural}' must be a non-empty list; got {_shown(values[plural])}")


_UNSET = object()  # a destination still holding it after parsing was not written on the command line


def explicit_dests(parser: argparse.ArgumentParser, tokens: list[str]) -> set[str]:
    """The destinations of the flags actually written in `tokens`. argparse fills in a default only where
    the namespace it is given lacks the attribute, so a namespace prefilled with a marker shows which flags
    were written (a repeatable flag starts from None, to which argparse appends)."""
    start = {dest: None if _kind(action) == "append" else _UNSET for dest, action in parser.flags.items()}
    parsed = vars(parser.parse_args(tokens, namespace=argparse.Namespace(**start)))
    return {dest for dest, value in parsed.items() if value is not _UNSET and value is not None}


def file_sweeps(path: Path, parser: argparse.ArgumentParser, tokens: list[str]) -> list[list[str]]:
    """The token lists of each sweep an experiment file asks for, the command line's `tokens` last."""
    values = {key: value for key, value in load(path).items() if value is not None}
    try:
        _check_keys(values, parser)
        actions = _actions(parser)
        # A repeatable flag (--set, --model-arg, --search) is merged per key instead: it comes later.
        given = {dest for dest in explicit_dests(parser, tokens) if _kind(actions.get(dest)) != "append"}
        dropped = {key for dest in given for key in (dest, *CONTRADICTS.get(dest, ()))}
        axes = {}  # per product key: one token list per value
        fixed: list[str] = []
        for key, value in values.items():
            dest = PRODUCT_KEYS.get(key, key)
            if dest in dropped:
                continue
            if key in PRODUCT_KEYS:
                axes[key] = [_tokens(f"{key}[{i}]", item, actions[dest]) for i, item in enumerate(value)]
            else:
                fixed += _tokens(key, value, actions[dest])
    except UsageError as error:
        raise UsageError(f"--config {path}: {error}") from None
    ordered = [axes[key] for key in PRODUCT_KEYS if key in axes]  # datasets outermost, then models, sizes
    return [fixed + [t for part in combo for t in part] + tokens for combo in itertools.product(*ordered)]


def resolved(args: argparse.Namespace, parser: argparse.ArgumentParser) -> dict[str, Any]:
    """A sweep's parsed arguments as experiment-file keys: what `--config` needs to run it again.
    Unset flags (None, an empty list, a false switch) are left out: they leave the defaults."""
    out: dict[str, Any] = {}
    for dest, action in _actions(parser).items():
        value = getattr(args, dest, None)
        if dest in NOT_STORED or value is None or value == [] or (value is False and _kind(action) == "flag"):
            continue
        if _kind(action) == "append" and all("=" in str(item) for item in value):
            value = _nested(value)
        elif isinstance(value, Path):
            value = str(value)
        out[dest] = value
    return out


def _nested(pairs: list[str]) -> dict[str, Any]:
    """["lora.r=16", "lora.lr=0.001"] -> {"lora": {"r": 16, "lr": 0.001}}; "lr=1e-4,3e-4" -> {"lr": [..]}."""
    from benchmark.parsing import parse_value

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
    shards, count = path.with_suffix(".shards"), shard(sweep.args.shard)[1]
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


def sweeps(parser: argparse.ArgumentParser, tokens: list[str], args: argparse.Namespace) -> list[Sweep]:
    """The sweeps of a `run` command: one from the command line, or one per product cell of --config."""
    token_lists = [tokens] if args.config is None else file_sweeps(args.config, parser, tokens)
    namespaces = [args] if args.config is None else [parser.parse_args(each) for each in token_lists]
    return [Sweep(each, resolved(each, parser), tokens) for each in namespaces]
