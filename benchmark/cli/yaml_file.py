"""Experiment files read safely: PyYAML's safe loader without aliases or duplicate keys, with bounded size
and nesting, and every problem a one-line UsageError naming the file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from benchmark.errors import UsageError

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
