"""The contract every fine-tuning strategy implements.

A strategy turns a backbone into a model ready to train, and nothing more: the runner owns
data, seeds, optimiser, schedule, loop, evaluation, measurement and storage.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from torch import nn


@dataclasses.dataclass(frozen=True)
class NoOptions:
    """Options of a strategy that has none of its own."""


@dataclasses.dataclass
class Split:
    """A model cut in two: `logits = rest(trunk(x))`.

    `trunk` is frozen and deterministic in eval mode, so the runner runs it without autograd and,
    when the input pipeline is deterministic, once per image for the whole run. `rest` holds every
    trainable parameter.
    """

    trunk: nn.Module
    rest: nn.Module


class Strategy:
    """Base class of the strategies; subclasses are registered with `strategies.register`."""

    name: ClassVar[str]
    description: ClassVar[str]
    Options: ClassVar[type] = NoOptions
    uses_pretrained: ClassVar[bool] = True
    # Training hyper-parameters that suit this strategy; command-line flags override them.
    defaults: ClassVar[dict[str, Any]] = {}
    # Where the defaults come from (shown by `list` and in the README).
    source: ClassVar[str] = ""

    def __init__(self, options: Any = None) -> None:
        self.options = options if options is not None else self.Options()

    def prepare(self, model: nn.Module) -> nn.Module:
        """Freeze, adapt or re-initialise `model` in place and return the model to train."""
        raise NotImplementedError

    def split(self, model: nn.Module) -> Split | None:
        """The frozen prefix and trainable rest of a prepared model, or None if nothing is frozen."""
        return None


def freeze(module: nn.Module) -> None:
    for param in module.parameters():
        param.requires_grad_(False)


def unfreeze(module: nn.Module) -> None:
    for param in module.parameters():
        param.requires_grad_(True)
