"""SSF's module (Lian et al. 2022): a learnable per-channel scale and shift on a layer's output."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class ScaleShift(nn.Module):
    """`layer(...) * ssf_scale + ssf_shift`, per channel: the last dimension of token features, dimension 1
    of a convolution's (N, C, H, W) output.

    Starts at scale 1 and shift 0, the identity. Departure from the paper: its official code draws
    them from N(1, 0.02) and N(0, 0.02); exact 1 and 0 make the model start at the backbone's function.
    """

    def __init__(self, layer: nn.Module, channels: int, channel_dim: int, like: torch.Tensor) -> None:
        super().__init__()
        self.layer, self.channel_dim = layer, channel_dim
        self.ssf_scale = nn.Parameter(torch.ones(channels, device=like.device, dtype=like.dtype))
        self.ssf_shift = nn.Parameter(torch.zeros(channels, device=like.device, dtype=like.dtype))

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        x = self.layer(*args, **kwargs)
        if self.channel_dim == -1:
            return x * self.ssf_scale + self.ssf_shift
        trailing = (1,) * (x.ndim - 2)  # spatial dimensions after the channel dimension
        return x * self.ssf_scale.view(-1, *trailing) + self.ssf_shift.view(-1, *trailing)
