"""FacT's modules (Jie & Deng 2023, "FacT: Factor-Tuning for Lightweight Adaptation on Vision Transformer";
reference code github.com/JieShibo/PETL-ViT, FacT/fact_tt.py and fact_tk.py).

FacT treats the weight updates of every block's qkv, proj, fc1 and fc2 as one tensor and factorises it. Both
forms share two projections across all blocks, `u` (width -> rank) and `v` (rank -> width, zero at the start so
the model starts at the backbone's function); what sits between them differs:
- tensor-train (`tt`): each layer's own small matrices (q, k, v, proj: rank x rank; fc1: rank -> 4 rank;
  fc2: 4 rank -> rank);
- Tucker (`tk`): one core (rank x rank x rank) and one factor (rank x 12 columns per block), shared; a
  layer's rank x rank matrices are the core times its columns of the factor.
The MLP's 4 x width sides are taken as 4 slices of width, each through `u` or `v`, as the reference.
"""

from __future__ import annotations

import math

import torch
from torch import nn

ATTENTION_SLOTS = 4  # q, k, v and proj each get one rank x rank matrix


class Factors(nn.Module):
    """The projections shared by every block (`u`, `v`), and for Tucker the core and the factor."""

    def __init__(self, width: int, rank: int, tucker_columns: int, like: torch.Tensor) -> None:
        super().__init__()
        kwargs = {"device": like.device, "dtype": like.dtype}
        self.u = nn.Linear(width, rank, bias=False, **kwargs)  # nn.Linear's default start, as the reference
        self.v = nn.Linear(rank, width, bias=False, **kwargs)
        nn.init.zeros_(self.v.weight)
        self.dropout = nn.Dropout(0.1)  # on the rank-sized features, as the reference
        if tucker_columns:
            self.core = nn.Parameter(torch.empty(rank, rank, rank, **kwargs))
            self.factor = nn.Parameter(torch.empty(rank, tucker_columns, **kwargs))
            nn.init.xavier_uniform_(self.core)
            nn.init.xavier_uniform_(self.factor)


class FacTLinear(nn.Module):
    """`layer(x) + scale * delta(x)` for one of qkv, proj, fc1 (`parts` 3, 1 and `ratio`) or fc2 (input of
    `ratio` slices of width). `middles()` gives the rank-sized matrices between `u` and `v`, applied as
    `h @ M`: one per output slice of qkv and proj; one rank x (ratio rank) for fc1; (ratio rank) x rank
    for fc2."""

    def __init__(self, layer: nn.Linear, factors: Factors, kind: str, ratio: int, scale: float) -> None:
        super().__init__()
        self.layer, self.kind, self.ratio, self.scale = layer, kind, ratio, scale
        self._factors = [factors]  # shared and registered on the model once; not a child here

    def middles(self) -> list[torch.Tensor]:
        raise NotImplementedError

    def delta(self, x: torch.Tensor) -> torch.Tensor:
        factors = self._factors[0]
        u, v, drop = factors.u, factors.v, factors.dropout
        middles = self.middles()
        if self.kind == "fc1":  # rank -> ratio x rank, then each slice up to width
            hidden = drop(u(x) @ middles[0])
            return v(hidden.unflatten(-1, (self.ratio, -1))).flatten(-2)
        if self.kind == "fc2":  # ratio slices of width down to rank each, then ratio x rank -> rank
            hidden = u(x.unflatten(-1, (self.ratio, -1))).flatten(-2)
            return v(drop(hidden @ middles[0]))
        down = u(x)
        return torch.cat([v(drop(down @ middle)) for middle in middles], dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x) + self.scale * self.delta(x)


def _uniform(rows: int, columns: int, like: torch.Tensor) -> nn.Parameter:
    """nn.Linear's default start for a (rows -> columns) map stored as `h @ M`: U(-1/sqrt(rows), 1/sqrt(rows))."""
    bound = 1 / math.sqrt(rows)
    return nn.Parameter(
        torch.empty(rows, columns, device=like.device, dtype=like.dtype).uniform_(-bound, bound)
    )


class TensorTrain(FacTLinear):
    """Tensor-train FacT: the layer's own middle matrices (the reference's `*_FacTs` layers, no bias)."""

    def __init__(self, layer: nn.Linear, factors: Factors, kind: str, ratio: int, scale: float) -> None:
        super().__init__(layer, factors, kind, ratio, scale)
        rank, like = factors.u.out_features, factors.u.weight
        shapes = {"qkv": [(rank, rank)] * 3, "proj": [(rank, rank)], "fc1": [(rank, ratio * rank)]}
        shapes["fc2"] = [(ratio * rank, rank)]
        self.tt = nn.ParameterList([_uniform(*shape, like) for shape in shapes[kind]])

    def middles(self) -> list[torch.Tensor]:
        return list(self.tt)


class Tucker(FacTLinear):
    """Tucker FacT: the middle matrices are the shared core times the layer's columns of the shared factor
    (columns per block: q, k, v, proj, then `ratio` for fc1 and `ratio` for fc2)."""

    def __init__(
        self, layer: nn.Linear, factors: Factors, kind: str, ratio: int, scale: float, first_column: int
    ) -> None:
        super().__init__(layer, factors, kind, ratio, scale)
        self.first_column = first_column

    def middles(self) -> list[torch.Tensor]:
        factors = self._factors[0]
        count = {"qkv": 3, "proj": 1}.get(self.kind, self.ratio)
        columns = factors.factor[:, self.first_column : self.first_column + count]
        mixed = factors.core @ columns  # (rank, rank, count)
        if self.kind == "fc1":
            return [mixed.reshape(mixed.shape[0], -1)]  # rank x (ratio rank), the reference's layout
        if self.kind == "fc2":
            return [mixed.reshape(mixed.shape[0], -1).t()]
        return list(mixed.unbind(-1))


def add_fact(vit: nn.Module, rank: int, scale: float, tucker: bool) -> None:
    """Wrap every block's qkv, proj, fc1 and fc2 of a frozen ViT with FacT updates; the shared factors go
    on the model as `vit.fact`."""
    width, like = vit.embed_dim, next(vit.blocks.parameters())
    ratio = vit.blocks[0].mlp.fc1.out_features // width
    per_block = ATTENTION_SLOTS + 2 * ratio
    vit.fact = Factors(width, rank, per_block * len(vit.blocks) if tucker else 0, like)
    for index, block in enumerate(vit.blocks):
        column = index * per_block
        targets = (
            ("attn.qkv", "qkv", column),
            ("attn.proj", "proj", column + 3),
            ("mlp.fc1", "fc1", column + ATTENTION_SLOTS),
            ("mlp.fc2", "fc2", column + ATTENTION_SLOTS + ratio),
        )
        for path, kind, first in targets:
            layer = block.get_submodule(path)
            if tucker:
                wrapped = Tucker(layer, vit.fact, kind, ratio, scale, first)
            else:
                wrapped = TensorTrain(layer, vit.fact, kind, ratio, scale)
            block.set_submodule(path, wrapped)
