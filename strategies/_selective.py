"""Selective tuning: train a chosen subset of the backbone's own parameters, plus the head."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from strategies.base import freeze

if TYPE_CHECKING:
    from torch import nn


def train_selected(
    model: nn.Module, selected: Callable[[str, nn.Module, nn.Parameter], bool], strategy: str, needs: str
) -> nn.Module:
    """Freeze `model`, then unfreeze every backbone parameter for which
    `selected(name, owning module, parameter)` holds (the head is `prepare_model`'s).

    Raises ValueError naming `needs` when no backbone parameter is selected: the strategy would
    then be a linear probe under another name.
    """
    freeze(model)
    head = model.get_classifier()
    head_params = {id(param) for param in head.parameters()}
    chosen = 0
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if id(param) not in head_params and selected(name, module, param):
                param.requires_grad_(True)
                chosen += 1
    if not chosen:
        raise ValueError(
            f"strategy '{strategy}' needs {needs} outside the head; {type(model).__name__} has none"
        )
    return model


def train_block_part(model: nn.Module, part: str, strategy: str) -> nn.Module:
    """Selective tuning of one sub-layer of every block: every weight and bias of each block's `part`
    (`attn`: qkv and proj; `mlp`: fc1 and fc2), plus the head. The model must be a timm ViT."""
    from strategies.vit import require_vit_blocks

    vit = require_vit_blocks(model, strategy, (part,))
    chosen = {id(param) for block in vit.blocks for param in getattr(block, part).parameters()}
    return train_selected(
        vit, lambda _name, _module, param: id(param) in chosen, strategy, f"parameters in each block's {part}"
    )
