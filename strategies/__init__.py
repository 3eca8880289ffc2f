"""The registry of fine-tuning strategies, filled by the `register` decorator as each module is imported.

Every module of this package is imported here, so a new strategy is one new file and nothing else.

Rule: a strategy module's top level stays light. It holds the strategy's metadata (name, family,
description, validated Options, defaults, source, search space) and imports torch, peft and timm, and the
helper modules that do (`_peft`, `_bottleneck`, `_trunk`, `_prompts`, `_scale_shift`, `vit`), inside its
methods, so that `--help`, `list` and usage errors answer at once. tests/test_cli.py checks that importing
this package in a fresh interpreter imports no torch.
"""

from __future__ import annotations

import importlib
import pkgutil

from benchmark.registry import Registry
from strategies.base import FAMILIES, Split, Strategy

REGISTRY: Registry[type[Strategy]] = Registry("strategy")


def register(cls: type[Strategy]) -> type[Strategy]:
    """Add a strategy to the registry; its family must be declared, and be one of FAMILIES."""
    family = getattr(cls, "family", None)
    if family not in FAMILIES:
        raise ValueError(
            f"strategy '{cls.name}' must declare its family, one of {', '.join(FAMILIES)}; got {family!r}"
        )
    return REGISTRY.add(cls.name, cls)


def names() -> list[str]:
    return REGISTRY.names()


def get(name: str) -> type[Strategy]:
    return REGISTRY.get(name)


_HELPERS = {"base", "recipes", "vit"}  # modules that define no strategy of their own (`vit` imports timm)
for _module in pkgutil.iter_modules(__path__):
    if _module.name not in _HELPERS and not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["REGISTRY", "Split", "Strategy", "get", "names", "register"]
