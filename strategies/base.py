"""The contract every fine-tuning strategy implements.

A strategy turns a backbone into a model ready to train, and nothing more: the runner owns
data, seeds, optimiser, schedule, loop, evaluation, measurement and storage. Where a method needs
something of the runner, it gets a hook here, never a branch on its name in the runner.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:  # for type hints only: importing the strategies must not import torch
    import torch
    from torch import nn

# Learning-rate grids of `--search default`, by optimiser family.
SGD_LR_GRID = (0.001, 0.003, 0.01, 0.03)  # the ViT paper's fine-tuning grid (Dosovitskiy et al. 2021)
ADAMW_LR_GRID = (1e-4, 3e-4, 1e-3, 3e-3)  # the usual PEFT grid on VTAB-1k (VPT, NOAH, V-PETL)

# Families group strategies in plots (one colour per family) and in the README.
FAMILIES = ("baseline", "probe", "selective", "additive", "reparameterised", "prompt")


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
    family: ClassVar[str]  # one of FAMILIES, declared by every strategy (checked by `strategies.register`)
    Options: ClassVar[type] = NoOptions
    uses_pretrained: ClassVar[bool] = True
    # Training hyper-parameters that suit this strategy; command-line flags override them.
    defaults: ClassVar[dict[str, Any]] = {}
    # Where the defaults come from (shown by `list` and in the README).
    source: ClassVar[str] = ""
    # The prepared model computes the backbone's function before the first step (adapters start at
    # zero or identity). False for methods whose added parts change the output from the start.
    starts_at_backbone: ClassVar[bool] = True
    # The smallest training batch the method can take (a BatchNorm in training mode needs two images).
    min_batch_size: ClassVar[int] = 1

    def __init__(self, options: Any = None) -> None:
        self.options = options if options is not None else self.Options()

    @classmethod
    def search_space(cls) -> dict[str, tuple]:
        """The grid of `--search default`: the learning rate, by optimiser family."""
        sgd = cls.defaults.get("optimizer", "momentum") in ("momentum", "sgd", "nesterov")
        return {"lr": SGD_LR_GRID if sgd else ADAMW_LR_GRID}

    def prepare(self, model: nn.Module) -> nn.Module:
        """Freeze, adapt or re-initialise `model` in place and return the model to train; `prepare_model`
        then makes its new head (`model.get_classifier()`) trainable, for every strategy.

        A ValueError here means the strategy cannot apply to this model or these options; it is
        raised at plan time (on a meta-device skeleton) and shown as a one-line error.
        """
        raise NotImplementedError

    def split(self, model: nn.Module) -> Split | None:
        """The frozen prefix and trainable rest of a prepared model, or None if nothing is frozen."""
        return None

    def extra_loss(self, model: nn.Module) -> torch.Tensor | None:
        """A regularisation term added to the training loss after each forward pass (None: none)."""
        return None

    def on_step_end(self, model: nn.Module, step: int, total_steps: int) -> None:
        """Called after each optimiser step, gradients still in place; `step` counts from 1."""

    def lr_ratio(self, name: str, param: nn.Parameter) -> float:
        """The learning rate of the trainable parameter `name` over the run's `lr` (1: the run's lr).

        The schedule scales every parameter's lr alike, so the ratio holds throughout the run.
        """
        return 1.0

    def no_weight_decay(self, name: str, param: nn.Parameter) -> bool:
        """True for a vector the method stores with a second dimension of size 1 (a scale or singular value
        per output, shaped (n, 1)). Weight decay leaves every vector alone: biases, norm weights, the
        model's `no_weight_decay()` names and every 1-D parameter already (benchmark/train/optimizer_groups.py);
        this names the others, so that no method's scales are pulled towards 0 while another's are not.
        """
        return False

    def effective_params(self, model: nn.Module) -> int:
        """Trainable parameters that can change the prepared model's output at the end of training, the head
        included: the trainable count, unless the method stores numbers that never reach the output
        (BOFT's symmetric halves) or prunes them away (AdaLoRA's rank budget)."""
        return sum(param.numel() for param in model.parameters() if param.requires_grad)

    def extra_state(self, model: nn.Module) -> dict[str, Any]:
        """What training changes outside the model's trainable parameters, buffers and the optimiser (e.g.
        importance scores kept by the strategy), saved in each end-of-epoch checkpoint so that a resumed run
        equals an uninterrupted one. Tensors (copied, on the CPU) and plain containers only: checkpoints are
        loaded with weights_only=True. Empty for a strategy whose state is all in the model."""
        return {}

    def load_extra_state(self, model: nn.Module, state: dict[str, Any]) -> None:
        """Put back what `extra_state` gave, into the model this strategy object prepared; it replaces
        whatever state the strategy holds (the fresh state too, when a damaged checkpoint is rolled back)."""

    def merged(self, model: nn.Module) -> nn.Module | None:
        """A copy of the prepared (and trained) `model` with the method's additions folded into plain weights,
        for inference: the same outputs (up to rounding) at the backbone's shape and cost. None when the method
        has no such merge (the default), or adds nothing to merge. `model` itself is left as it is."""
        return None


class PeftStrategy(Strategy):
    """A strategy whose additions are peft tuner layers (strategies/_peft.py), which peft merges where the
    method has a merge."""

    def merged(self, model: nn.Module) -> nn.Module | None:
        from strategies._peft import merged

        return merged(model)


def freeze(module: nn.Module) -> None:
    for param in module.parameters():
        param.requires_grad_(False)


def unfreeze(module: nn.Module) -> None:
    for param in module.parameters():
        param.requires_grad_(True)
