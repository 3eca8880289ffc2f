"""Visual prompt tuning (Jia et al. 2022, VPT, ECCV; reference code github.com/KMnP/vpt): learnable
tokens inserted into a frozen timm VisionTransformer's token sequence. Shared by `vpt_shallow` and
`vpt_deep` through `_vpt` (their recipe, options and base class).

Where the prompts go. timm runs `patch_embed -> _pos_embed -> patch_drop -> norm_pre -> blocks -> norm
-> pool -> head`. `add_prompts` replaces `model.blocks` by `PromptedBlocks`, the same blocks in the same
order (so `model.blocks[i]`, `len(model.blocks)` and every state-dict key stay as they were) plus one
parameter, `blocks.prompts`. Its forward inserts the prompts after the prefix tokens (class token and
any register tokens), without position embedding as in VPT, and drops the prompts' outputs after the
last block. The final norm, the pooling and the head therefore see exactly the backbone's own tokens:
the head reads the class token (as in VPT) and an average-pooling model averages the patch tokens only.

Departure from the reference code: VPT drops the prompt outputs only implicitly (its head reads
`x[:, 0]`); dropping them explicitly is what lets every timm pooling (token, avg, max, map) work unchanged.
timm's gradient-checkpointing and attention-mask paths iterate `model.blocks` themselves and would
bypass the prompts; the runner uses neither.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from strategies.base import freeze
from strategies.vit import require_vit


def prompt_init_bound(patch_size: tuple[int, int], width: int) -> float:
    """The VPT code's uniform bound, Xavier-style: sqrt(6 / (3 * patch_h * patch_w + width))
    (KMnP/vpt src/models/vit_prompt/vit.py, 'xavier_uniform initialization')."""
    return math.sqrt(6.0 / (3 * math.prod(patch_size) + width))


class PromptedBlocks(nn.Sequential):
    """A ViT's blocks with prompt tokens: `prompts[i]` (tokens x width) enters before block i.

    With one layer of prompts (shallow) they are inserted before block 0 and then travel through the
    blocks like any token; with one per block (deep) each block's prompt outputs are replaced by the
    next block's prompts. The prompts' outputs are removed after the last block.
    """

    def __init__(
        self, blocks: nn.Sequential, prompts: nn.Parameter, num_prefix_tokens: int, dropout: float
    ) -> None:
        super().__init__(*blocks)  # the same modules under the same indices
        self.prompts = prompts  # (prompted layers, tokens, width); a parameter, not a child module
        self.num_prefix_tokens = num_prefix_tokens  # class and register tokens stay in front
        self.dropout = dropout  # functional, so that iterating the blocks yields blocks only

    def _prompt(self, layer: int, batch: int, like: torch.Tensor) -> torch.Tensor:
        prompt = self.prompts[layer].to(like.dtype).expand(batch, -1, -1)
        return F.dropout(prompt, self.dropout, self.training)  # per image, as in VPT

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        prefix, tokens = self.num_prefix_tokens, self.prompts.shape[1]
        for index, block in enumerate(self):
            if index < len(self.prompts):
                # Before block 0 the prompts are inserted; later they replace the previous outputs.
                rest = x[:, prefix:] if index == 0 else x[:, prefix + tokens :]
                x = torch.cat((x[:, :prefix], self._prompt(index, x.shape[0], x), rest), dim=1)
            x = block(x)
        return torch.cat((x[:, :prefix], x[:, prefix + tokens :]), dim=1)


def add_prompts(model: nn.Module, strategy: str, tokens: int, layers: int, dropout: float) -> nn.Module:
    """Freeze `model`, give it `tokens` prompts for each of its first `layers` blocks (1: shallow,
    depth: deep), and leave the prompts trainable. Works on a meta-device skeleton."""
    vit = require_vit(model, strategy)
    freeze(vit)
    reference = next(vit.blocks.parameters())
    prompts = nn.Parameter(
        torch.empty(layers, tokens, vit.embed_dim, device=reference.device, dtype=reference.dtype)
    )
    bound = prompt_init_bound(tuple(vit.patch_embed.patch_size), vit.embed_dim)
    nn.init.uniform_(prompts, -bound, bound)
    vit.blocks = PromptedBlocks(vit.blocks, prompts, vit.num_prefix_tokens, dropout)
    return vit


def remove_prompts(model: nn.Module) -> nn.Module:
    """Take a prompted model back to its plain blocks (the same modules); the prompts are dropped.
    A model without prompts is returned unchanged."""
    if isinstance(model.blocks, PromptedBlocks):
        model.blocks = nn.Sequential(*model.blocks)
    return model
