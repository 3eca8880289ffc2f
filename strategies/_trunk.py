"""Cutting any timm model at its classifier: trunk = everything before it, rest = the classifier.

timm gives every model the same two calls: `forward_features` (the backbone) and
`forward_head(x, pre_logits=True)` (pooling, norm and dropout up to the classifier's input), and
`get_classifier()` (the final layer). So `model(x) == classifier(forward_head(forward_features(x),
pre_logits=True))` for ViTs, ResNets, ConvNeXts and the rest, and the frozen trunk can be run once
per image and cached whatever the architecture.

`ProbeHead`, the linear probe's classifier, lives here too: the probe is the strategy that cuts there.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from strategies.base import Split

BATCHNORM_EPS = 1e-6  # MAE's main_linprobe.py: BatchNorm1d(affine=False, eps=1e-6)


def require_timm_classifier(model: nn.Module, strategy: str) -> nn.Module:
    """The model's classifier; a ValueError naming what is needed if the model is not a timm classifier."""
    needed = ("forward_features", "forward_head", "get_classifier")
    classifier = model.get_classifier() if all(hasattr(model, name) for name in needed) else None
    if not isinstance(classifier, nn.Module) or isinstance(classifier, nn.Identity):
        raise ValueError(
            f"strategy '{strategy}' needs a timm classification model (forward_features, "
            f"forward_head and a classifier from get_classifier()); got {type(model).__name__}"
        )
    return classifier


def module_name(model: nn.Module, module: nn.Module) -> str:
    """The dotted name of `module` inside `model` (e.g. 'head', 'fc', 'head.fc')."""
    return next(name for name, candidate in model.named_modules() if candidate is module)


def _path(model: nn.Module, classifier: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, module) of the model and each module between it and the classifier, outermost first."""
    parts = module_name(model, classifier).split(".")
    names = [".".join(parts[:depth]) for depth in range(len(parts))]  # '', then e.g. 'head'
    return [(name, model.get_submodule(name)) for name in names]


def _outside(model: nn.Module, classifier: nn.Module) -> Iterator[tuple[str, nn.Module | nn.Parameter]]:
    """Every child module and direct parameter of the model that is not the classifier or on its path."""
    path = _path(model, classifier)
    on_path = {id(module) for _, module in path} | {id(classifier)}
    for prefix, module in path:
        prefix = f"{prefix}." if prefix else ""
        for name, child in module.named_children():
            if id(child) not in on_path:
                yield prefix + name, child
        for name, param in module.named_parameters(recurse=False):  # e.g. a ViT's cls_token, pos_embed
            yield prefix + name, param


class Features(nn.Module):
    """`forward_head(forward_features(x), pre_logits=True)`: the input of the model's classifier.

    It registers every part of the model except the classifier (so `parameters()` and `eval()` see
    exactly the frozen part) and calls the model's own methods, which skip the classifier.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        classifier = model.get_classifier()
        self.parts = nn.ModuleDict()
        self.params = nn.ParameterDict()
        for name, part in _outside(model, classifier):
            key = name.replace(".", "__")  # ModuleDict keys cannot contain dots
            (self.params if isinstance(part, nn.Parameter) else self.parts)[key] = part
        # The model and the modules on the classifier's path are called but not registered, which
        # would put the classifier's trainable parameters into the trunk.
        self._model = [model]
        self._path = [module for _, module in _path(model, classifier)]

    def train(self, mode: bool = True) -> Features:
        super().train(mode)
        for module in self._path:  # their own flag: e.g. a ResNet's forward_head reads self.training
            module.training = mode
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        model = self._model[0]
        return model.forward_head(model.forward_features(images), pre_logits=True)


def split_at_classifier(model: nn.Module, strategy: str) -> Split:
    """Trunk: the whole model up to the classifier's input; rest: the classifier."""
    return Split(trunk=Features(model), rest=require_timm_classifier(model, strategy))


class ProbeHead(nn.Sequential):
    """Non-affine BatchNorm1d then the model's own Linear classifier (MAE's linear-probe head)."""

    def __init__(self, linear: nn.Linear) -> None:
        # momentum=None: a cumulative average. The trunk is frozen, so the features are fixed and the
        # running statistics become the training set's exact mean and variance (MAE: momentum 0.1).
        norm = nn.BatchNorm1d(
            linear.in_features, affine=False, eps=BATCHNORM_EPS, momentum=None, device=linear.weight.device
        )
        super().__init__(norm, linear)
