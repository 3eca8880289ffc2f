"""A small name -> object registry, shared by strategies and datasets (the pattern of timm and peft)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Generic, TypeVar

T = TypeVar("T")


def did_you_mean(name: str, valid: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(valid), n=1)
    return f" Did you mean '{close[0]}'?" if close else ""


class Registry(Generic[T]):
    """Lower-case names, each registered once; an unknown name is a ValueError listing the valid ones."""

    def __init__(self, kind: str) -> None:
        self.kind = kind  # "strategy", "dataset": used in messages
        self._items: dict[str, T] = {}

    def add(self, name: str, item: T) -> T:
        if name != name.lower():
            raise ValueError(f"{self.kind} names are lower case; got '{name}'")
        if name in self._items:
            raise ValueError(f"{self.kind} '{name}' is registered twice")
        self._items[name] = item
        return item

    def remove(self, name: str) -> None:
        self._items.pop(name)

    def get(self, name: str) -> T:
        if name not in self._items:
            hint = did_you_mean(name, self._items)
            raise ValueError(f"unknown {self.kind} '{name}'.{hint} Valid: {', '.join(self.names())}")
        return self._items[name]

    def names(self) -> list[str]:
        """Sorted, so that listings do not depend on the order in which modules were imported."""
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items
