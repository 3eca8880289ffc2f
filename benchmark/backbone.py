"""timm backbones: creation, pretrained weights (hub, local file, or none) and the model's data config."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

from benchmark.config import did_you_mean
from benchmark.errors import UsageError

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".npz")


@dataclasses.dataclass
class Backbone:
    model: nn.Module
    img_size: int  # square input resolution in pixels
    mean: tuple[float, ...]
    std: tuple[float, ...]
    weights: str  # where the weights came from, in words


def check_model_name(name: str) -> None:
    if not timm.is_model(name):
        candidates = timm.list_models(name.split(".")[0].split("_")[0] + "*") or timm.list_models()
        raise UsageError(
            f"unknown model '{name}'.{did_you_mean(name, candidates)} Valid: any name from "
            "timm.list_models(), optionally with a pretrained tag, e.g. vit_base_patch16_224.augreg_in21k"
        )


def check_weights_file(path: str) -> Path:
    file = Path(path)
    if not file.is_file():
        raise UsageError(
            f"weights file {file} does not exist; --weights takes 'hub' or a file ending in "
            f"{', '.join(WEIGHT_SUFFIXES)}"
        )
    if file.suffix not in WEIGHT_SUFFIXES:
        raise UsageError(
            f"weights file {file} has an unknown type; valid endings: {', '.join(WEIGHT_SUFFIXES)}"
        )
    return file


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 24), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _create(
    name: str, num_classes: int, img_size: int | None, model_args: dict[str, Any], pretrained: bool
) -> nn.Module:
    kwargs = dict(model_args) | ({"img_size": img_size} if img_size else {})
    try:
        return timm.create_model(name, pretrained=pretrained, num_classes=num_classes, **kwargs)
    except TypeError as error:  # an unknown keyword from --model-arg, or img_size
        if "img_size" in str(error) and "img_size" not in model_args:
            # Convolutional networks (ResNet, ConvNeXt) take any resolution and have no img_size:
            # --img-size then only sets the input pipeline's resolution.
            return _create(name, num_classes, None, model_args, pretrained)
        raise UsageError(f"model {name} does not accept these --model-arg values: {error}") from None


def create_skeleton(
    name: str, num_classes: int, img_size: int | None, model_args: dict[str, Any]
) -> nn.Module:
    """The architecture on the meta device: no memory, no weights; for counting and validation."""
    with torch.device("meta"):
        return _create(name, num_classes, img_size, model_args, pretrained=False)


def _strip_head(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Drop the checkpoint's classifier when its shape differs from the new head's."""
    own = model.state_dict()
    head_keys = {
        f"{model.pretrained_cfg.get('classifier', 'head')}.{suffix}" for suffix in ("weight", "bias")
    }
    return {
        key: value
        for key, value in state.items()
        if not (key in head_keys and key in own and own[key].shape != value.shape)
    }


def _load_state_dict_file(model: nn.Module, path: Path) -> None:
    """Load a .safetensors/.pth/.bin state dict: every backbone key must match; only the head may be new."""
    try:
        state = timm.models.load_state_dict(str(path))
    except Exception as error:  # torch and safetensors raise many types for unreadable files
        raise UsageError(f"weights file {path} is not readable ({type(error).__name__}: {error})") from None
    # The model family's own filter adapts foreign layouts and resamples position embeddings.
    family = importlib.import_module(type(model).__module__)
    if hasattr(family, "checkpoint_filter_fn"):
        try:
            state = family.checkpoint_filter_fn(state, model)
        except Exception as error:
            raise UsageError(f"weights file {path} does not fit {type(model).__name__}: {error}") from None
    state = _strip_head(state, model)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as error:  # shape mismatches
        first = str(error).splitlines()[1].strip() if "\n" in str(error) else str(error)
        raise UsageError(f"weights file {path} is for another architecture: {first}") from None
    classifier = model.pretrained_cfg.get("classifier", "head")
    missing_backbone = [key for key in missing if not key.startswith(classifier + ".")]
    if missing_backbone or unexpected:
        example = (missing_backbone or unexpected)[0]
        raise UsageError(
            f"weights file {path} is for another architecture: {len(missing_backbone)} "
            f"missing and {len(unexpected)} unexpected keys (e.g. '{example}')"
        )


def _load_npz(model: nn.Module, path: Path) -> None:
    """The original Google ViT .npz checkpoints, through timm's own converter."""
    if not hasattr(model, "load_pretrained"):
        raise UsageError(
            f"{path}: .npz weights are the original Google ViT format; {type(model).__name__} "
            "cannot load them"
        )
    try:
        model.load_pretrained(str(path))
    except Exception as error:
        raise UsageError(
            f"weights file {path} does not fit {type(model).__name__} ({type(error).__name__}: {error})"
        ) from None


def _zero_head(model: nn.Module) -> None:
    """The new head starts at zero, as in the ViT paper's fine-tuning."""
    head = model.get_classifier()
    if isinstance(head, nn.Linear):
        nn.init.zeros_(head.weight)
        nn.init.zeros_(head.bias)


def create(
    name: str,
    num_classes: int,
    weights: str,
    img_size: int | None = None,
    model_args: dict[str, Any] | None = None,
) -> Backbone:
    """A backbone with a new head for `num_classes`; `weights` is 'hub', 'none' or a file path.

    Loading failures raise UsageError: a run never falls back silently to random weights.
    """
    model_args = model_args or {}
    if weights == "hub":
        try:
            model = _create(name, num_classes, img_size, model_args, pretrained=True)
        except UsageError:
            raise
        except Exception as error:  # network and hub errors
            raise UsageError(
                f"could not fetch pretrained weights for {name} from the Hugging Face hub "
                f"({type(error).__name__}); pass --weights FILE or --no-pretrained"
            ) from None
        described = f"hub:{model.pretrained_cfg.get('hf_hub_id') or name}"
    else:
        model = _create(name, num_classes, img_size, model_args, pretrained=False)
        described = "none (random initialisation)"
        if weights != "none":
            path = check_weights_file(weights)
            (_load_npz if path.suffix == ".npz" else _load_state_dict_file)(model, path)
            described = f"file:{path}"
    if weights != "none":
        _zero_head(model)
    config = timm.data.resolve_model_data_config(model)
    size = img_size or int(config["input_size"][-1])
    return Backbone(model, size, tuple(config["mean"]), tuple(config["std"]), described)
