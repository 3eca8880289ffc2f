"""The registry of fine-tuning strategies: a dict filled by the `register` decorator at import."""

from __future__ import annotations

import difflib

from strategies.base import Split, Strategy

_REGISTRY: dict[str, type[Strategy]] = {}


def register(cls: type[Strategy]) -> type[Strategy]:
    name = cls.name
    if name != name.lower():
        raise ValueError(f"strategy names are lower case; got '{name}'")
    if name in _REGISTRY:
        raise ValueError(f"strategy '{name}' is registered twice")
    _REGISTRY[name] = cls
    return cls


def names() -> list[str]:
    return sorted(_REGISTRY)


def get(name: str) -> type[Strategy]:
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, names(), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ValueError(f"unknown strategy '{name}'.{hint} Valid: {', '.join(names())}")
    return _REGISTRY[name]


# Importing the modules fills the registry.
from strategies import full, last_k, linear, lora, scratch  # noqa: E402,F401

__all__ = ["Split", "Strategy", "get", "names", "register"]
