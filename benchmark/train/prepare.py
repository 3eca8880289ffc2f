"""A strategy applied to a backbone: the one place that makes the strategy, prepares the model and splits it.

The runner, `speed`, the dry-run plan and the loading of kept weights all go through `prepare_model`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from torch import nn

import strategies
from benchmark.train.measure import ParamCounts


@dataclasses.dataclass
class Prepared:
    strategy: strategies.Strategy
    model: nn.Module  # the whole prepared model: logits = model(images)
    trunk: nn.Module | None  # frozen prefix, run without autograd (None: nothing frozen up front)
    trainable: nn.Module  # what trains: logits = trainable(trunk(images)), or the whole model

    @property
    def counts(self) -> ParamCounts:
        return ParamCounts.of(self.model)

    def state(self) -> dict[str, Any]:
        """What training changes, named as in `model.state_dict()`: trainable parameters and the buffers of
        the trained part (e.g. BatchNorm running statistics), on the CPU."""
        trained_buffers = {id(buffer) for buffer in self.trainable.buffers()}
        state = {name: param for name, param in self.model.named_parameters() if param.requires_grad}
        state |= {
            name: buffer for name, buffer in self.model.named_buffers() if id(buffer) in trained_buffers
        }
        return {name: tensor.detach().cpu().clone() for name, tensor in state.items()}


def apply_strategy(strategy: strategies.Strategy, model: nn.Module) -> nn.Module:
    """`strategy.prepare(model)`, then the new head (`get_classifier()`) made trainable: every strategy trains
    it, so none does it by hand."""
    model = strategy.prepare(model)
    for param in model.get_classifier().parameters():
        param.requires_grad_(True)
    return model


def prepare_model(strategy_name: str, options: Any, model: nn.Module) -> Prepared:
    strategy = strategies.get(strategy_name)(options)
    model = apply_strategy(strategy, model)
    split = strategy.split(model)
    if split is None:
        return Prepared(strategy, model, None, model)
    return Prepared(strategy, model, split.trunk, split.rest)
