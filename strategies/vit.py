"""Cutting a timm VisionTransformer into a frozen prefix (trunk) and a trainable rest."""

from __future__ import annotations

import torch
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from strategies.base import Split


def require_vit(model: nn.Module, strategy: str) -> VisionTransformer:
    if not isinstance(model, VisionTransformer):
        raise ValueError(
            f"strategy '{strategy}' needs a timm VisionTransformer (a model with .blocks); "
            f"got {type(model).__name__}"
        )
    return model


class _Prefix(nn.Module):
    """Patch and position embedding plus the first `n_blocks` blocks: the tokens they output."""

    def __init__(self, vit: VisionTransformer, n_blocks: int) -> None:
        super().__init__()
        self.patch_embed = vit.patch_embed
        self.pos_drop, self.patch_drop, self.norm_pre = vit.pos_drop, vit.patch_drop, vit.norm_pre
        self.blocks = nn.Sequential(*vit.blocks[:n_blocks])
        self._pos_embed = vit._pos_embed  # adds the class token and position embedding

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.norm_pre(self.patch_drop(self._pos_embed(self.patch_embed(images)))))


class _Suffix(nn.Module):
    """Blocks from `first_block` on, the final norm, pooling and the head."""

    def __init__(self, vit: VisionTransformer, first_block: int) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*vit.blocks[first_block:])
        self.norm, self.fc_norm, self.head_drop, self.head = vit.norm, vit.fc_norm, vit.head_drop, vit.head
        self.attn_pool = vit.attn_pool  # registered here so its parameters train (None for token pooling)
        self._pool = vit.pool

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self._pool(self.norm(self.blocks(tokens)))
        return self.head(self.head_drop(self.fc_norm(x)))


def split_blocks(vit: VisionTransformer, n_frozen_blocks: int) -> Split:
    """Trunk: embeddings and the first `n_frozen_blocks` blocks; rest: everything after."""
    return Split(trunk=_Prefix(vit, n_frozen_blocks), rest=_Suffix(vit, n_frozen_blocks))


def require_vit_blocks(model: nn.Module, strategy: str, parts: tuple[str, ...]) -> VisionTransformer:
    """A timm VisionTransformer whose every block has the submodules `parts` (e.g. attn, mlp)."""
    vit = require_vit(model, strategy)
    for block in vit.blocks:
        missing = [part for part in parts if not isinstance(getattr(block, part, None), nn.Module)]
        if missing:
            raise ValueError(
                f"strategy '{strategy}' needs ViT blocks with {', '.join(parts)} submodules "
                f"(timm's Block); {type(block).__name__} has no {', '.join(missing)}"
            )
    return vit
