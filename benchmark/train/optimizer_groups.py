"""The optimiser's parameter groups: which parameters weight decay pulls towards 0, and at which lr each trains.

Weight decay applies to weight matrices only (the head's weight, adapter and LoRA factors, rotation blocks,
prompt tokens, a fully fine-tuned backbone's weights). Every vector is exempt, whatever the method: biases,
norm weights and biases, position embedding and class token (timm's rule: 1-D parameters, `.bias` names
and the model's `no_weight_decay()`), and the vectors that methods add: SSF's scales and shifts, DoRA's
magnitudes, VeRA's scaling vectors, FourierFT's spectrum (all 1-D), and (IA)3's scales, BOFT's output
scales and AdaLoRA's singular values, which peft stores as (n, 1) or (1, n) matrices and which each strategy
names through its `no_weight_decay` hook. A multiplicative scale starts at 1; decaying it would pull the
layer's output towards 0, so no scale is decayed (issue 19, part 7).

A strategy may give some parameters another learning rate through its `lr_ratio` hook (FourierFT's
spectrum); the group's lr is the run's times that ratio, and the schedule scales every group alike.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torch import nn

if TYPE_CHECKING:
    from strategies.base import Strategy


def parameter_groups(
    model: nn.Module, strategy: Strategy, lr: float, weight_decay: float
) -> list[dict[str, Any]]:
    """timm's weight-decay groups of `model` with the strategy's exempt vectors added to the no-decay ones,
    each split by the strategy's lr ratio (groups without an `lr` key train at the optimiser's lr)."""
    from timm.optim import param_groups_weight_decay

    trainable = [(name, param) for name, param in model.named_parameters() if param.requires_grad]
    exempt = set(getattr(model, "no_weight_decay", set)())
    exempt |= {name for name, param in trainable if strategy.no_weight_decay(name, param)}
    ratio = {id(param): strategy.lr_ratio(name, param) for name, param in trainable}
    groups = []
    for group in param_groups_weight_decay(model, weight_decay, no_weight_decay_list=exempt):
        for value in dict.fromkeys(ratio[id(param)] for param in group["params"]):  # in order of first use
            params = [param for param in group["params"] if ratio[id(param)] == value]
            groups.append(group | {"params": params} | ({} if value == 1.0 else {"lr": lr * value}))
    return groups
