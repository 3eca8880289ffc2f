"""Convpass's module (Jie & Deng 2022, reference code github.com/JieShibo/PETL-ViT, convpass/vtab/convpass.py):
a convolutional bypass beside a block's attention or MLP."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class QuickGELU(nn.Module):
    """`x * sigmoid(1.702 x)`: the activation of the reference code."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class ConvBypass(nn.Module):
    """1x1 down-projection (a Linear), QuickGELU, 3x3 convolution on the patch-token grid, QuickGELU, dropout,
    1x1 up-projection. Each prefix token (class, registers) goes through the same convolution as a 1x1 image,
    so only the kernel's centre reaches it, as the reference code does with the class token.

    Initialisation as the reference with `xavier_init`: Xavier-uniform down-projection and convolution
    weights, zero biases, and a zero up-projection, so the bypass outputs exactly 0 before training.
    """

    def __init__(
        self, width: int, dim: int, grid: tuple[int, int], prefix_tokens: int, like: torch.Tensor
    ) -> None:
        super().__init__()
        kwargs = {"device": like.device, "dtype": like.dtype}
        self.down = nn.Linear(width, dim, **kwargs)
        self.conv = nn.Conv2d(dim, dim, 3, padding=1, **kwargs)
        self.up = nn.Linear(dim, width, **kwargs)
        self.act, self.dropout = QuickGELU(), nn.Dropout(0.1)  # dropout 0.1 as the reference
        self.grid, self.prefix_tokens = grid, prefix_tokens
        for layer in (self.down, self.conv):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def _conv_tokens(self, tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """(B, height * width, dim) tokens through the convolution on a height x width grid."""
        batch, _, dim = tokens.shape
        image = tokens.transpose(1, 2).reshape(batch, dim, height, width)
        return self.conv(image).flatten(2).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, count, _ = x.shape
        if count != self.prefix_tokens + self.grid[0] * self.grid[1]:
            raise ValueError(
                f"convpass expects {self.prefix_tokens} prefix tokens and a {self.grid[0]}x{self.grid[1]} "
                f"patch grid; got {count} tokens"
            )
        down = self.act(self.down(x))
        prefix = down[:, : self.prefix_tokens].reshape(batch * self.prefix_tokens, 1, -1)
        prefix = self._conv_tokens(prefix, 1, 1).reshape(batch, self.prefix_tokens, -1)
        patches = self._conv_tokens(down[:, self.prefix_tokens :], *self.grid)
        hidden = self.dropout(self.act(torch.cat((prefix, patches), dim=1)))
        return self.up(hidden)


class Bypassed(nn.Module):
    """`layer(x) + scale * bypass(x)`: the bypass reads the sub-layer's input (the block's LayerNorm output),
    as `x + attn(norm1(x)) + s * convpass(norm1(x))` in the reference."""

    def __init__(self, layer: nn.Module, bypass: ConvBypass, scale: float) -> None:
        super().__init__()
        self.layer, self.bypass, self.scale = layer, bypass, scale

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.layer(x, *args, **kwargs) + self.scale * self.bypass(x)
