"""The bottleneck MLP shared by the adapter strategies: down-projection, activation, up-projection."""

from __future__ import annotations

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


def validate_bottleneck(strategy: str, dim: int) -> None:
    if not isinstance(dim, int) or dim < 1:
        raise ValueError(
            f"{strategy}.dim (bottleneck width) must be a positive integer, e.g. 64; got {dim!r}"
        )
