"""q, k and v as three linear layers, for the methods whose references adapt q and v apart.

timm fuses the attention's query, key and value projections into one `qkv` layer (3w x w: 2304 x 768 on
ViT-B/16). FourierFT and VeRA adapt the query and the value projections (w x w each) in their reference
code; peft can target those only once they are separate modules. `split_qkv` replaces each fused `qkv`
by a `SplitQKV` holding `q`, `k` and `v` (each w x w, rows copied from the fused weight and bias), whose
output is the fused layer's, so peft targets `q` and `v` and the model still starts at the backbone's
function.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

PARTS = ("q", "k", "v")  # timm's order of the fused rows: attention reshapes its output as (3, heads, dim)


def _rows(fused: nn.Linear, index: int) -> nn.Linear:
    """The `index`-th third of `fused` as its own layer: the same numbers, the same requires_grad."""
    width = fused.out_features // len(PARTS)
    rows = slice(index * width, (index + 1) * width)
    part = nn.Linear(fused.in_features, width, bias=fused.bias is not None, device="meta")
    weight = fused.weight.detach()[rows].clone()
    part.weight = nn.Parameter(weight, requires_grad=fused.weight.requires_grad)
    if fused.bias is not None:
        part.bias = nn.Parameter(fused.bias.detach()[rows].clone(), requires_grad=fused.bias.requires_grad)
    return part


class SplitQKV(nn.Module):
    """`cat(q(x), k(x), v(x))`: the fused layer's function with q, k and v as separate linear layers."""

    def __init__(self, fused: nn.Linear) -> None:
        super().__init__()
        if fused.out_features % len(PARTS):
            raise ValueError(f"a fused qkv layer has 3 x w outputs; got {fused.out_features}")
        self.in_features, self.out_features = fused.in_features, fused.out_features
        self.q, self.k, self.v = (_rows(fused, index) for index in range(len(PARTS)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.q(x), self.k(x), self.v(x)], dim=-1)


def _fused_layers(model: nn.Module) -> list[tuple[str, nn.Linear]]:
    return [
        (name, module)
        for name, module in model.named_modules()
        if (name == "qkv" or name.endswith(".qkv"))
        and isinstance(module, nn.Linear)
        and module.out_features % len(PARTS) == 0
    ]


def split_qkv(model: nn.Module, targets: Sequence[str]) -> int:
    """Replace every fused `qkv` linear layer of `model` by a `SplitQKV` when `targets` names q, k or v
    (targets such as `qkv` or `fc1` leave the model as it is). Returns the number of layers split."""
    if not set(targets) & set(PARTS):
        return 0
    layers = _fused_layers(model)
    for name, fused in layers:
        model.set_submodule(name, SplitQKV(fused))
    return len(layers)


def fuse_qkv(model: nn.Module) -> int:
    """The inverse of `split_qkv`, for a merged model: replace every `SplitQKV` whose q, k and v are plain
    linear layers again by one fused layer (rows q, k, v in timm's order), so the model has the backbone's
    layers and cost. Returns the number of layers fused."""
    layers = [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, SplitQKV) and all(type(getattr(module, part)) is nn.Linear for part in PARTS)
    ]
    for name, split in layers:
        parts = [getattr(split, part) for part in PARTS]
        like = parts[0].weight
        fused = nn.Linear(
            split.in_features, split.out_features, parts[0].bias is not None, like.device, like.dtype
        )
        with torch.no_grad():
            fused.weight.copy_(torch.cat([part.weight for part in parts]))
            if fused.bias is not None:
                fused.bias.copy_(torch.cat([part.bias for part in parts]))
        fused.requires_grad_(like.requires_grad)
        model.set_submodule(name, fused)
    return len(layers)
