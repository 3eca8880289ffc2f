"""Hugging Face `transformers` ViT checkpoints: layout conversion to timm, config check, hub download.

A `save_pretrained` folder holds `config.json` (a `ViTConfig`), `model.safetensors` or `pytorch_model.bin`,
and often `preprocessor_config.json` (the image mean and std). The weights use separate query/key/value
projections; timm fuses them into one `qkv` layer, so they are concatenated in q, k, v order.

What is dropped, and why: the classifier (a new head replaces it), the pooler (`pooler.dense` + tanh on the
class token, the hidden layer of the pre-training head; the ViT paper, Dosovitskiy et al. 2021, Sec. 3.1,
removes it for fine-tuning and timm's ViT has no such layer), and `embeddings.mask_token` (only used by
masked-image-modelling pre-training). Every other tensor must map onto a timm name, else UsageError.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from benchmark.errors import UsageError

# Imports inside functions stay there: this is a training module, whose code version (results/identity.py)
# hashes its syntax tree, so moving an import would mark every stored result as stale for no change.

# The file names `save_pretrained` writes, in the order they are preferred.
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
DROPPED = re.compile(r"^(classifier\.|pooler\.|embeddings\.mask_token$)")

# transformers' on-disk ViT layout (unchanged since v4) and its v5 in-memory names, each to timm's.
# A `None` target is one of q/k/v, fused into `blocks.N.attn.qkv` afterwards.
_RENAMES: list[tuple[re.Pattern, str | None]] = [
    (re.compile(pattern), target)
    for pattern, target in (
        (r"^embeddings\.cls_token$", "cls_token"),
        (r"^embeddings\.position_embeddings$", "pos_embed"),
        (r"^embeddings\.patch_embeddings\.projection\.(weight|bias)$", r"patch_embed.proj.\1"),
        (r"^layernorm\.(weight|bias)$", r"norm.\1"),
        (r"^encoder\.layer\.(\d+)\.attention\.attention\.(query|key|value)\.(weight|bias)$", None),
        (r"^encoder\.layer\.(\d+)\.attention\.output\.dense\.(weight|bias)$", r"blocks.\1.attn.proj.\2"),
        (r"^encoder\.layer\.(\d+)\.intermediate\.dense\.(weight|bias)$", r"blocks.\1.mlp.fc1.\2"),
        (r"^encoder\.layer\.(\d+)\.output\.dense\.(weight|bias)$", r"blocks.\1.mlp.fc2.\2"),
        (r"^(?:encoder\.layer|layers)\.(\d+)\.layernorm_before\.(weight|bias)$", r"blocks.\1.norm1.\2"),
        (r"^(?:encoder\.layer|layers)\.(\d+)\.layernorm_after\.(weight|bias)$", r"blocks.\1.norm2.\2"),
        (r"^layers\.(\d+)\.attention\.(q|k|v)_proj\.(weight|bias)$", None),
        (r"^layers\.(\d+)\.attention\.o_proj\.(weight|bias)$", r"blocks.\1.attn.proj.\2"),
        (r"^layers\.(\d+)\.mlp\.(fc1|fc2)\.(weight|bias)$", r"blocks.\1.mlp.\2.\3"),
    )
]
_QKV_ORDER = {"query": 0, "key": 1, "value": 2, "q": 0, "k": 1, "v": 2}


def is_hf_vit(state: dict[str, torch.Tensor]) -> bool:
    """Whether a state dict is in transformers' ViT layout (with or without the `vit.` prefix)."""
    return any(key.endswith("embeddings.patch_embeddings.projection.weight") for key in state)


def to_timm(state: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """transformers' ViT tensors under timm's names; an unknown tensor is a UsageError naming it."""
    out: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[str, str], list[torch.Tensor | None]] = {}
    for full_key, value in state.items():
        key = full_key.removeprefix("vit.")
        if DROPPED.match(key):
            continue
        for pattern, target in _RENAMES:
            match = pattern.match(key)
            if match and target is None:
                block, part, kind = match.groups()
                qkv.setdefault((block, kind), [None, None, None])[_QKV_ORDER[part]] = value
                break
            if match:
                out[match.expand(target)] = value
                break
        else:
            raise UsageError(f"{source}: tensor '{full_key}' has no place in a timm ViT")
    for (block, kind), parts in qkv.items():
        if any(part is None for part in parts):
            raise UsageError(f"{source}: block {block} lacks one of query/key/value {kind}")
        out[f"blocks.{block}.attn.qkv.{kind}"] = torch.cat(parts)
    return out


def check_config(config: dict[str, Any], model: nn.Module, source: str) -> None:
    """A transformers ViTConfig must describe `model`; one line lists every field that does not.

    The image size may differ: position embeddings are then resampled (see backbone.fit_state).
    """
    if not (hasattr(model, "blocks") and hasattr(model, "patch_embed")):
        raise UsageError(
            f"{source} is a transformers ViT; --model must be a timm ViT, not {type(model).__name__}"
        )
    attn, mlp = model.blocks[0].attn, model.blocks[0].mlp
    patch = model.patch_embed.patch_size[0]
    expected = {
        "patch_size": patch,
        "hidden_size": model.embed_dim,
        "num_hidden_layers": len(model.blocks),
        "num_attention_heads": attn.num_heads,
        "intermediate_size": mlp.fc1.out_features,
        "num_channels": model.patch_embed.proj.in_channels,
        "qkv_bias": attn.qkv.bias is not None,
    }
    wrong = [
        f"{field} {config[field]} (the model has {value})"
        for field, value in expected.items()
        if field in config and config[field] != value
    ]
    activation = config.get("hidden_act", "gelu")
    # timm's ViT uses exact GELU (nn.GELU()); transformers' "gelu" is the same function.
    accepted = {"none": ("gelu",), "tanh": ("gelu_new", "gelu_pytorch_tanh")}
    approximate = getattr(mlp.act, "approximate", None)
    if not isinstance(mlp.act, nn.GELU) or activation not in accepted[approximate]:
        wrong.append(f"hidden_act {activation} (the model has {type(mlp.act).__name__})")
    if wrong:
        raise UsageError(
            f"weights {source} are for another architecture than this {type(model).__name__}: "
            + ", ".join(wrong)
        )


def is_vit_config(config: dict[str, Any]) -> bool:
    return config.get("model_type") == "vit"


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON file's content, None when it is absent; unreadable JSON is a UsageError."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise UsageError(f"{path} is not readable JSON ({error})") from None


def preprocessor_stats(folder: Path) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """Mean and std from a `preprocessor_config.json` (image_mean, image_std), when there."""
    config = read_json(folder / "preprocessor_config.json")
    if config and "image_mean" in config and "image_std" in config:
        return tuple(map(float, config["image_mean"])), tuple(map(float, config["image_std"]))
    return None


def set_layer_norm_eps(model: nn.Module, eps: float) -> None:
    """Use the checkpoint's LayerNorm epsilon (transformers default 1e-12; timm's ViT builds 1e-6)."""
    for module in model.modules():
        if isinstance(module, nn.LayerNorm):
            module.eps = eps


def parse_hub_spec(spec: str) -> tuple[str, str | None]:
    """`hf:owner/name[@revision]` as (repo id, revision)."""
    repo, _, revision = spec.removeprefix("hf:").partition("@")
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo) or (_ and not revision):
        raise UsageError(
            f"--weights {spec}: expected hf:OWNER/NAME or hf:OWNER/NAME@REVISION, "
            "e.g. hf:google/vit-base-patch16-224-in21k"
        )
    return repo, revision or None


def download(spec: str) -> Path:
    """The local folder holding a hub repo's config, preprocessor config and weights (cached).

    huggingface_hub caches in ~/.cache/huggingface and honours HF_HUB_OFFLINE=1 (cache only); without a
    network, only the cache is asked too (benchmark.weights.hub).
    """
    from benchmark.weights import hub

    repo, revision = parse_hub_spec(spec)
    with hub.cache_only_unless_reachable() as offline:
        return _download(repo, revision, offline)


def _download(repo: str, revision: str | None, offline: bool) -> Path:
    from huggingface_hub import snapshot_download

    from benchmark.weights import hub

    for name in WEIGHT_FILES:
        try:
            folder = Path(
                snapshot_download(
                    repo,
                    revision=revision,
                    allow_patterns=["config.json", "preprocessor_config.json", name],
                )
            )
        except Exception as error:  # offline and not cached, unknown repo, network: many types
            where = hub.not_cached_note(offline)
            raise UsageError(
                f"could not fetch hf:{repo} from the Hugging Face hub{where}: {type(error).__name__}; "
                "pass a local folder with --weights, or --no-pretrained"
            ) from None
        if (folder / name).is_file():
            return folder
    raise UsageError(f"hf:{repo} has none of {', '.join(WEIGHT_FILES)}")
