"""Values from the command line (and experiment files) turned into typed, validated settings."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from benchmark.errors import UsageError
from benchmark.registry import did_you_mean


def parse_value(text: str) -> Any:
    """A command-line value as int, float, bool or str."""
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def key_values(pairs: list[str], flag: str) -> dict[str, Any]:
    """`KEY=VALUE` arguments of a repeatable flag."""
    values = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"{flag} takes KEY=VALUE; got '{pair}'")
        values[key.strip()] = parse_value(value.strip())
    return values


def int_list(text: str, flag: str) -> list[int]:
    try:
        values = [int(item) for item in text.split(",") if item.strip()]
    except ValueError:
        raise UsageError(f"{flag} takes comma-separated integers, e.g. 0,1,2; got '{text}'") from None
    if not values:
        raise UsageError(f"{flag} needs at least one value")
    return values


def shard(text: str) -> tuple[int, int]:
    index, sep, count = text.partition("/")
    message = f"--shard takes I/N with 0 <= I < N, e.g. 0/4; got '{text}'"
    try:
        parsed = int(index), int(count)
    except ValueError:
        raise UsageError(message) from None
    if not sep or not 0 <= parsed[0] < parsed[1]:
        raise UsageError(message)
    return parsed


def coerce(value: Any, annotation: Any, key: str) -> Any:
    """Convert a parsed value to a dataclass field's declared type, or say what was expected."""
    inner = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
    if len(inner) == 1 and len(typing.get_args(annotation)) == 2:  # `X | None`: None, or an X
        return None if value is None else coerce(value, inner[0], key)
    if typing.get_origin(annotation) is tuple:
        items = (
            value.split(",")
            if isinstance(value, str)
            else value
            if isinstance(value, (list, tuple))
            else [value]
        )
        return tuple(str(item).strip() for item in items if str(item).strip())
    if annotation is bool and isinstance(value, bool):
        return value
    if annotation is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if annotation is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if annotation is str:
        return str(value)
    name = getattr(annotation, "__name__", str(annotation))
    raise UsageError(f"{key} must be a {name}; got '{value}'")


def build_dataclass(cls: type, values: dict[str, Any], prefix: str, error_prefix: str = "") -> Any:
    """Instantiate `cls` from parsed values, naming unknown keys and bad values in one line; `error_prefix`
    goes in front of the messages of `cls`'s own checks."""
    hints = typing.get_type_hints(cls)
    fields = [field.name for field in dataclasses.fields(cls)]
    for key in values:
        if key not in fields:
            valid = ", ".join(fields) if fields else "none"
            raise UsageError(f"unknown option '{prefix}{key}'.{did_you_mean(key, fields)} Valid: {valid}")
    typed = {key: coerce(value, hints[key], prefix + key) for key, value in values.items()}
    try:
        return cls(**typed)
    except ValueError as error:
        raise UsageError(f"{error_prefix}{error}") from None
