"""Visual Query Tuning's modules (Tu et al. 2023, CVPR; reference code github.com/andytu28/VQT,
src/models/vit_backbones/h2t_vit.py): learnable query tokens per block that read the block's tokens, and a
head over the final class feature and every block's query outputs."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from strategies._prompts import prompt_init_bound


class QueryBlocks(nn.Sequential):
    """A ViT's blocks (same modules, same indices) with `queries[i]` (count x width) entering block i.

    The queries go in front of the tokens; an attention mask hides them as keys, so they read the tokens
    and nothing reads them (as the reference, which drops them from the keys and values): the tokens'
    outputs are the backbone's. Each block's query outputs are kept in `readout` for the head; the queries
    leave the sequence after each block.
    """

    def __init__(self, blocks: nn.Sequential, queries: nn.Parameter, dropout: float) -> None:
        super().__init__(*blocks)
        self.queries = queries  # (blocks, count, width)
        self.dropout = dropout  # on the queries, per image, as the reference's prompt dropout
        self.readout: torch.Tensor | None = None  # (batch, blocks x count x width) after a forward pass

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        count, outputs = self.queries.shape[1], []
        length = count + x.shape[1]
        mask = torch.zeros(length, length, device=x.device, dtype=x.dtype)
        mask[:, :count] = float("-inf")  # no token, query or not, attends to a query
        for index, block in enumerate(self):
            query = self.queries[index].to(x.dtype).expand(x.shape[0], -1, -1)
            query = F.dropout(query, self.dropout, self.training)
            out = block(torch.cat((query, x), dim=1), attn_mask=mask)
            outputs.append(out[:, :count].flatten(1))
            x = out[:, count:]
        self.readout = torch.stack(outputs, dim=1)  # (batch, blocks, count x width)
        return x


class QueryHead(nn.Module):
    """The classifier over `[class feature, block 1 queries, ..., block L queries]`, each part L2-normalised
    if `normalize` (the reference's NORMALIZE_FEATS)."""

    def __init__(self, linear: nn.Linear, blocks: QueryBlocks, normalize: bool) -> None:
        super().__init__()
        self.linear = linear
        self.normalize = normalize
        self._blocks = [blocks]  # registered on the model; not a child here

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        readout = self._blocks[0].readout
        if readout is None or readout.shape[0] != features.shape[0]:
            raise RuntimeError("the VQT head runs after the model's blocks, in the same forward pass")
        parts = torch.cat((features.unsqueeze(1), readout), dim=1)
        if self.normalize:
            parts = F.normalize(parts, dim=-1)  # each part (class feature, each query output) on its own
        return self.linear(parts.flatten(1))


def add_queries(vit: nn.Module, count: int, dropout: float, normalize: bool) -> nn.Module:
    """Give each block of a frozen ViT `count` trainable query tokens and replace the head by a trainable
    one over the class feature and the query outputs."""
    like = next(vit.blocks.parameters())
    queries = nn.Parameter(
        torch.empty(len(vit.blocks), count, vit.embed_dim, device=like.device, dtype=like.dtype)
    )
    bound = prompt_init_bound(
        tuple(vit.patch_embed.patch_size), vit.embed_dim
    )  # VPT's start, as the reference
    nn.init.uniform_(queries, -bound, bound)
    vit.blocks = QueryBlocks(vit.blocks, queries, dropout)
    old = vit.get_classifier()
    inputs = vit.embed_dim * (1 + len(vit.blocks) * count)
    linear = nn.Linear(inputs, old.out_features, device=old.weight.device, dtype=old.weight.dtype)
    with torch.no_grad():  # the class-feature columns start as the model's head; the query columns as timm's
        linear.weight[:, : vit.embed_dim].copy_(old.weight)
        nn.init.trunc_normal_(linear.weight[:, vit.embed_dim :], std=0.02)
        linear.bias.copy_(old.bias)
    vit.head = QueryHead(linear, vit.blocks, normalize)
    return vit
