"""RepAdapter's module (Luo et al. 2023; reference code github.com/luogen1996/RepAdapter, repadapter.py): a
linear adapter `x + s * up(dropout(down(x)))` in front of a linear layer, merged into that layer's weight and
bias for evaluation."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class RepAdapted(nn.Module):
    """`layer(x + scale * up(dropout(down(x))))`; `up` is group-wise (block-diagonal, `groups` blocks).

    Training runs the adapter; in eval mode without autograd the adapter is merged into the layer, one linear
    map as the deployed model: W' = W + s (W U) D and b' = b + s W (U d + u) (U, u: up weight and bias; D, d:
    down weight and bias). The merged weights are recomputed whenever a parameter changed (a training step,
    a loaded checkpoint), so evaluation always sees the current adapter.

    Initialisation as the reference: Xavier-uniform down weight, zero biases, zero up weight, so the adapter
    is the identity before training.
    """

    def __init__(self, layer: nn.Linear, dim: int, groups: int, scale: float) -> None:
        super().__init__()
        width, like = layer.in_features, layer.weight
        self.layer, self.groups, self.scale = layer, groups, scale
        self.down = nn.Linear(width, dim, device=like.device, dtype=like.dtype)
        nn.init.xavier_uniform_(self.down.weight)
        nn.init.zeros_(self.down.bias)
        # The reference's Conv1d(dim, width, 1, groups=groups) weight: (width, dim / groups).
        self.up_weight = nn.Parameter(torch.zeros(width, dim // groups, device=like.device, dtype=like.dtype))
        self.up_bias = nn.Parameter(torch.zeros(width, device=like.device, dtype=like.dtype))
        self.dropout = nn.Dropout(0.1)  # on the adapter's hidden features, as the reference
        self._merged: tuple[tuple, torch.Tensor, torch.Tensor | None] | None = None

    def up_dense(self) -> torch.Tensor:
        """The group-wise up-projection as a dense (width x dim) matrix: group i maps hidden channels
        [i dim/g, (i+1) dim/g) to output channels [i width/g, (i+1) width/g)."""
        blocks = self.up_weight.reshape(self.groups, -1, self.up_weight.shape[1])
        return torch.block_diag(*blocks)

    def merged(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The layer's weight and bias with the adapter folded in."""
        params = [
            p for p in (self.layer.weight, self.layer.bias, *self.adapter_parameters()) if p is not None
        ]
        key = tuple((p.data_ptr(), p._version, p.device, p.dtype) for p in params)
        if self._merged is None or self._merged[0] != key:
            with torch.no_grad():
                weight, up = self.layer.weight, self.up_dense()
                shift = self.scale * (up @ self.down.bias + self.up_bias)  # the adapter's constant output
                merged_weight = weight + self.scale * (weight @ up) @ self.down.weight
                merged_bias = weight @ shift + (0 if self.layer.bias is None else self.layer.bias)
            self._merged = (key, merged_weight, merged_bias)
        return self._merged[1], self._merged[2]

    def adapter_parameters(self) -> tuple[nn.Parameter, ...]:
        return (self.down.weight, self.down.bias, self.up_weight, self.up_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training and not torch.is_grad_enabled():
            return F.linear(x, *self.merged())
        hidden = self.dropout(self.down(x))
        return self.layer(x + self.scale * F.linear(hidden, self.up_dense(), self.up_bias))


def merged(model: nn.Module) -> nn.Module:
    """A copy of `model` with every RepAdapted layer replaced by a plain nn.Linear holding its merged weight
    and bias (the deployed model of the paper); `model` itself is left as it is."""
    import copy

    merged_model = copy.deepcopy(model)
    for name, module in list(merged_model.named_modules()):
        if isinstance(module, RepAdapted):
            weight, bias = module.merged()
            layer = module.layer
            plain = nn.Linear(
                layer.in_features, layer.out_features, bias is not None, weight.device, weight.dtype
            )
            with torch.no_grad():
                plain.weight.copy_(weight)
                if bias is not None:
                    plain.bias.copy_(bias)
            plain.requires_grad_(False)
            merged_model.set_submodule(name, plain)
    return merged_model
