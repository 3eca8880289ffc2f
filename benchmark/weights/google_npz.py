"""The original Google ViT `.npz` checkpoints (big_vision / vision_transformer layout) as a timm state dict.

Departs from timm: timm's `_load_weights` copies the file straight into a model, keeping only as many
blocks as the model has and resampling the patch embedding and position embedding to fit (bilinear,
unlike its bicubic for other formats). Here the file is only renamed and reshaped, every tensor of it,
so the one strict check in `backbone.fit_state` treats `.npz` exactly like every other format.
The tensor layouts follow timm's converter (`timm.models.vision_transformer._load_weights`).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from benchmark.errors import UsageError

PREFIXES = ("opt/target/", "params/")  # checkpoints saved with optimiser state or by big_vision
# The pre-training head: `pre_logits` is its hidden layer (ViT paper, Sec. 3.1), `head` its classifier.
DROPPED = re.compile(r"^(head|pre_logits)/")
_BLOCK = re.compile(r"^Transformer/encoderblock_(\d+)/(.+)$")
_ATTENTION = "MultiHeadDotProductAttention_1/"
_PART = {"scale": "weight", "bias": "bias", "kernel": "weight"}


def _top_level(key: str, value: torch.Tensor) -> tuple[str, torch.Tensor] | None:
    if key == "embedding/kernel":  # (height, width, in, out) -> conv (out, in, height, width)
        return "patch_embed.proj.weight", value.permute(3, 2, 0, 1)
    names = {
        "embedding/bias": "patch_embed.proj.bias",
        "cls": "cls_token",
        "Transformer/posembed_input/pos_embedding": "pos_embed",
        "Transformer/encoder_norm/scale": "norm.weight",
        "Transformer/encoder_norm/bias": "norm.bias",
    }
    return (names[key], value) if key in names else None


def _in_block(rest: str, value: torch.Tensor) -> tuple[str, torch.Tensor] | None:
    """One tensor of an encoder block: (timm name inside the block, tensor), None if unknown."""
    norms = {"LayerNorm_0/": "norm1.", "LayerNorm_2/": "norm2."}
    for prefix, name in norms.items():
        if rest.startswith(prefix) and rest[len(prefix) :] in ("scale", "bias"):
            return name + _PART[rest[len(prefix) :]], value
    mlp = re.fullmatch(r"MlpBlock_3/Dense_([01])/(kernel|bias)", rest)
    if mlp:
        fc, part = f"mlp.fc{int(mlp[1]) + 1}", mlp[2]
        return f"{fc}.{_PART[part]}", value.T if part == "kernel" else value
    out = re.fullmatch(_ATTENTION + r"out/(kernel|bias)", rest)
    if out:  # kernel (heads, head_dim, width) -> (width, heads * head_dim)
        return f"attn.proj.{_PART[out[1]]}", value.flatten(0, 1).T if out[1] == "kernel" else value
    return None


def to_timm(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor of the file under its timm name; an unknown tensor is a UsageError naming it."""
    try:
        with np.load(path) as archive:
            arrays = {key: torch.from_numpy(archive[key]) for key in archive.files}
    except Exception as error:  # numpy raises many types for unreadable files
        raise UsageError(f"weights file {path} is not readable ({type(error).__name__}: {error})") from None
    prefix = next((p for p in PREFIXES if f"{p}embedding/kernel" in arrays), "")
    state: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    for key, value in arrays.items():
        name = key.removeprefix(prefix)
        if DROPPED.match(name):
            continue
        block = _BLOCK.match(name)
        attention = block and re.fullmatch(_ATTENTION + r"(query|key|value)/(kernel|bias)", block[2])
        if attention:  # kernel (width, heads, head_dim) -> (heads * head_dim, width); bias flattened
            part = value.flatten(1).T if attention[2] == "kernel" else value.flatten()
            qkv.setdefault((block[1], _PART[attention[2]]), {})[attention[1]] = part
            continue
        mapped = _in_block(block[2], value) if block else _top_level(name, value)
        if mapped is None:
            raise UsageError(f"{path}: tensor '{key}' has no place in a timm ViT")
        state[f"blocks.{block[1]}.{mapped[0]}" if block else mapped[0]] = mapped[1]
    for (index, kind), parts in qkv.items():
        if set(parts) != {"query", "key", "value"}:
            raise UsageError(f"{path}: encoderblock_{index} lacks one of query/key/value {kind}")
        state[f"blocks.{index}.attn.qkv.{kind}"] = torch.cat([parts[p] for p in ("query", "key", "value")])
    return state
