"""The bottleneck MLP shared by the adapter strategies (down-projection, activation, up-projection), and
the wrappers that place it after (`adapter`) or beside (`adaptformer`) a block's sub-layer."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class Bottleneck(nn.Module):
    """`up(activation(down(x)))`, width `dim -> bottleneck -> dim`, both projections with bias.

    The up-projection (weight and bias) starts at zero, so the output is exactly 0 before training
    and an adapted model starts at the backbone's function. The down-projection keeps nn.Linear's
    default (Kaiming-uniform) weight with a zero bias: AdaptFormer's "lora" initialisation
    (Chen et al. 2022, official code).
    """

    def __init__(
        self,
        dim: int,
        bottleneck: int,
        activation: type[nn.Module],
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.down = nn.Linear(dim, bottleneck, device=device, dtype=dtype)
        self.activation = activation()
        self.up = nn.Linear(bottleneck, dim, device=device, dtype=dtype)
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.activation(self.down(x)))


class SequentialAdapter(nn.Module):
    """`h + adapter(h)` with `h = layer(...)`: the adapter sits on the sub-layer's output, before the
    block's residual connection (Houlsby et al. 2019, Fig. 2)."""

    def __init__(self, layer: nn.Module, adapter: Bottleneck) -> None:
        super().__init__()
        self.layer, self.adapter = layer, adapter

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        hidden = self.layer(*args, **kwargs)
        return hidden + self.adapter(hidden)


class ParallelAdapter(nn.Module):
    """`layer(x) + scale * adapter(x)`: the AdaptMLP beside the MLP, both fed the block's second
    LayerNorm output (Chen et al. 2022, eq. 4-5)."""

    def __init__(self, layer: nn.Module, adapter: Bottleneck, scale: float) -> None:
        super().__init__()
        self.layer, self.adapter, self.scale = layer, adapter, scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x) + self.scale * self.adapter(x)
