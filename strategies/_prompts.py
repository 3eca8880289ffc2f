"""Visual prompt tuning (Jia et al. 2022, VPT, ECCV; reference code github.com/KMnP/vpt): learnable
tokens inserted into a frozen timm VisionTransformer's token sequence. Shared by `vpt_shallow` and
`vpt_deep`.

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

import dataclasses
import math
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from strategies.base import Strategy, freeze, unfreeze
from strategies.vit import require_vit

# Training defaults: the VPT code's prompt recipe (KMnP/vpt configs/base-prompt.yaml and
# tune_vtab.py; the paper's implementation-details appendix): SGD momentum 0.9, cosine schedule
# with linear warm-up, weight decay 1e-4, no gradient clipping, learning rate = base_lr * batch / 256,
# base_lr searched in
# {0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50}. We take base_lr 1.0 (the value of the reference
# code's own VTAB example runs for dmlab and eurosat, demo.ipynb) at batch 128, i.e. lr 0.5.
# Departures: 10 epochs with 1 warm-up epoch instead of 100 with 10 (the same 10% warm-up share;
# CIFAR has 50x the images of a VTAB-1k task, and every strategy here gets the same epoch budget);
# crop + flip augmentation as for `full` and `lora` here (VPT's VTAB pipeline only resizes,
# src/data/datasets/tf_dataset.py).
VPT_BASE_LR_BATCH = 256  # VPT scales its base learning rate by batch / 256
VPT_DEFAULTS: dict[str, Any] = {
    "optimizer": "momentum",
    "lr": 1.0 * 128 / VPT_BASE_LR_BATCH,
    "weight_decay": 1e-4,
    "epochs": 10,
    "batch_size": 128,
    "warmup_epochs": 1.0,
    "clip_grad_norm": 0.0,
    "augment": True,
}
# `--search default`: four points of VPT's base-lr grid {0.25, 1, 5, 25}, scaled to batch 128.
# SGD on prompts needs far larger rates than the ViT paper's fine-tuning grid (0.001 to 0.03).
VPT_LR_GRID = tuple(base * 128 / VPT_BASE_LR_BATCH for base in (0.25, 1.0, 5.0, 25.0))
VPT_SOURCE = (
    "VPT (Jia et al. 2022) prompt recipe from its code (KMnP/vpt base-prompt.yaml, tune_vtab.py): "
    "SGD momentum 0.9, cosine, weight decay 1e-4, no clipping, lr = base 1.0 x batch/256 "
    "(searched 0.05-50); 10 epochs, 1 warm-up, crop + flip as for the other strategies here"
)


@dataclasses.dataclass(frozen=True)
class PromptOptions:
    strategy: ClassVar[str] = "vpt"  # the strategy's name, for error messages
    tokens: int = 10  # prompt tokens per prompted layer; VPT searches {1, 5, 10, 50, 100, 200}
    # Dropout on the prompt tokens during training; the reference code's VTAB runs use 0.1 (demo.ipynb).
    dropout: float = 0.1

    def __post_init__(self) -> None:
        if self.tokens < 1:
            raise ValueError(f"{self.strategy}.tokens must be at least 1; got {self.tokens}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"{self.strategy}.dropout must be in [0, 1); got {self.dropout}")


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
    depth: deep), and leave the prompts and the head trainable. Works on a meta-device skeleton."""
    vit = require_vit(model, strategy)
    freeze(vit)
    reference = next(vit.blocks.parameters())
    prompts = nn.Parameter(
        torch.empty(layers, tokens, vit.embed_dim, device=reference.device, dtype=reference.dtype)
    )
    bound = prompt_init_bound(tuple(vit.patch_embed.patch_size), vit.embed_dim)
    nn.init.uniform_(prompts, -bound, bound)
    vit.blocks = PromptedBlocks(vit.blocks, prompts, vit.num_prefix_tokens, dropout)
    unfreeze(vit.get_classifier())
    return vit


def remove_prompts(model: nn.Module) -> nn.Module:
    """Take a prompted model back to its plain blocks (the same modules); the prompts are dropped.
    A model without prompts is returned unchanged."""
    if isinstance(model.blocks, PromptedBlocks):
        model.blocks = nn.Sequential(*model.blocks)
    return model


class PromptTuning(Strategy):
    """Base of `vpt_shallow` and `vpt_deep`: frozen backbone, trainable prompts and head.

    `starts_at_backbone` is False: prompt tokens take part in attention from the first forward pass,
    so the prepared model's function differs from the backbone's before any training.
    """

    family = "prompt"
    defaults = VPT_DEFAULTS
    source = VPT_SOURCE
    starts_at_backbone = False
    deep: ClassVar[bool]  # one set of prompts per block, or one before the first block

    @classmethod
    def search_space(cls) -> dict[str, tuple]:
        return {"lr": VPT_LR_GRID}

    def prepare(self, model: nn.Module) -> nn.Module:
        layers = len(require_vit(model, self.name).blocks) if self.deep else 1
        return add_prompts(model, self.name, self.options.tokens, layers, self.options.dropout)
