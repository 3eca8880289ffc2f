"""timm backbones: creation, pretrained weights (hub, local file, or none) and the model's data config."""

from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import importlib
import math
from pathlib import Path
from typing import Any

import timm
import torch
from timm.layers import resample_abs_pos_embed
from torch import nn

from benchmark.config import did_you_mean
from benchmark.errors import UsageError
from benchmark.weights import google_npz, hf_weights, hub

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".npz")
# One interpolation for position embeddings from every source: timm's default for state dicts.
POS_EMBED_INTERPOLATION = "bicubic"


@dataclasses.dataclass
class Backbone:
    model: nn.Module
    img_size: int  # square input resolution in pixels
    mean: tuple[float, ...]
    std: tuple[float, ...]
    weights: str  # where the weights came from, in words
    normalisation: str  # where mean and std came from, e.g. "file: preprocessor_config.json"
    pos_embed: str  # what was done to the position embeddings, e.g. "resampled 4x4 -> 8x8 (bicubic)"


def check_model_name(name: str) -> None:
    if not timm.is_model(name):
        candidates = timm.list_models(name.split(".")[0].split("_")[0] + "*") or timm.list_models()
        raise UsageError(
            f"unknown model '{name}'.{did_you_mean(name, candidates)} Valid: any name from "
            "timm.list_models(), optionally with a pretrained tag, e.g. vit_base_patch16_224.augreg_in21k"
        )


def check_weights_file(path: str) -> Path:
    """The weights file of --weights PATH: the file itself, or the one save_pretrained wrote in a folder."""
    file = Path(path)
    if file.is_dir():
        inside = [file / name for name in hf_weights.WEIGHT_FILES if (file / name).is_file()]
        if not inside:
            raise UsageError(
                f"weights folder {file} has none of {', '.join(hf_weights.WEIGHT_FILES)} "
                "(a folder must be one written by save_pretrained)"
            )
        return inside[0]
    if not file.is_file():
        raise UsageError(
            f"weights file {file} does not exist; --weights takes 'hub', 'hf:OWNER/NAME', a file ending "
            f"in {', '.join(WEIGHT_SUFFIXES)} or a folder written by save_pretrained"
        )
    if file.suffix not in WEIGHT_SUFFIXES:
        raise UsageError(
            f"weights file {file} has an unknown type; valid endings: {', '.join(WEIGHT_SUFFIXES)}"
        )
    return file


def file_sha256(path: Path) -> str:
    """The file's SHA-256, read once per process for a file of this size and modification time (a sweep
    names its weights file in every cell, and a search plans its cells more than once)."""
    status = Path(path).stat()
    return _file_sha256(str(Path(path).resolve()), status.st_size, status.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
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
    """The architecture on the meta device: no memory, no weights; for counting and validation.
    An architecture that cannot be built (num_heads not dividing the width, a negative size, an image
    smaller than one patch) is a one-line UsageError.

    A copy of one skeleton per architecture: timm's weight initialisation runs even on the meta device
    (0.35 s for ViT-B/16), and a plan builds one per cell (112 in the VTAB-1k protocol's dry run)."""
    key = tuple(sorted(model_args.items()))
    try:
        hash(key)
    except TypeError:  # a list-valued --model-arg: built each time
        return _skeleton.__wrapped__(name, num_classes, img_size, key)
    return copy.deepcopy(_skeleton(name, num_classes, img_size, key))


@functools.lru_cache(maxsize=8)
def _skeleton(name: str, num_classes: int, img_size: int | None, model_args: tuple) -> nn.Module:
    model_args = dict(model_args)
    try:
        with torch.device("meta"):
            model = _create(name, num_classes, img_size, model_args, pretrained=False)
    except (AssertionError, RuntimeError, ValueError, ZeroDivisionError) as error:
        detail = " ".join(str(error).split()) or type(error).__name__
        raise UsageError(
            f"model {name} cannot be built with --model-arg {model_args or '{}'} and --img-size "
            f"{img_size or 'default'}: {detail}"
        ) from None
    grid = getattr(getattr(model, "patch_embed", None), "grid_size", None)
    if grid is not None and min(grid) < 1:
        patch = tuple(model.patch_embed.patch_size)
        raise UsageError(f"--img-size {img_size} is smaller than model {name}'s patch size {patch[0]}")
    return model


def weights_fingerprint(weights: str) -> str:
    """What identifies the weights, for the config hash: "" for hub/none, the file's sha256 for a
    local file or folder, the repo id (and @revision) for hf:. Bad input is a UsageError, before any run."""
    if weights in ("hub", "none"):
        return ""
    if weights.startswith("hf:"):
        repo, revision = hf_weights.parse_hub_spec(weights)
        return f"hf:{repo}" + (f"@{revision}" if revision else "")
    return file_sha256(check_weights_file(weights))


def _read_state(file: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a weights file under timm's ViT names (Google .npz and transformers converted)."""
    if file.suffix == ".npz":
        return google_npz.to_timm(file)
    try:
        state = timm.models.load_state_dict(str(file))
    except Exception as error:  # torch and safetensors raise many types for unreadable files
        raise UsageError(f"weights file {file} is not readable ({type(error).__name__}: {error})") from None
    return hf_weights.to_timm(state, str(file)) if hf_weights.is_hf_vit(state) else state


def _grid(tokens: int, source: str) -> int:
    side = math.isqrt(tokens)
    if side * side != tokens:
        raise UsageError(f"{source}: pos_embed has {tokens} patch positions, not a square grid")
    return side


def _resample_pos_embed(value: torch.Tensor, model: nn.Module, source: str) -> tuple[torch.Tensor, str]:
    """Position embeddings on the model's patch grid, the same way for every file format.

    Bicubic with antialiasing: timm's default for state dicts (checkpoint_filter_fn); timm's .npz loader
    would use bilinear instead. The class token's embedding is kept as it is.
    """
    prefix = 0 if getattr(model, "no_embed_class", False) else model.num_prefix_tokens
    old = _grid(value.shape[1] - prefix, source)
    new = tuple(model.patch_embed.grid_size)
    resampled = resample_abs_pos_embed(
        value, list(new), (old, old), prefix, interpolation=POS_EMBED_INTERPOLATION, antialias=True
    )
    return resampled, f"resampled {old}x{old} -> {new[0]}x{new[1]} ({POS_EMBED_INTERPOLATION})"


def _misfit(source: str, model: nn.Module, detail: str) -> UsageError:
    return UsageError(
        f"weights {source} are for another architecture than this {type(model).__name__}: {detail}"
    )


def _same_kind(value: torch.Tensor, own: torch.Tensor) -> bool:
    """Real floating-point for a floating-point model tensor (any precision), else the same dtype: an
    integer, boolean or complex tensor is never cast into a float weight (that would drop its meaning)."""
    if own.is_floating_point():
        return value.is_floating_point() and not value.is_complex()
    return value.dtype == own.dtype


def fit_state(
    state: dict[str, torch.Tensor], model: nn.Module, source: str
) -> tuple[dict[str, torch.Tensor], str]:
    """The file's backbone tensors, each onto the model's tensor of the same name and shape.

    Only position embeddings may be resampled (to a new image size); the file's classifier is dropped
    (a new head replaces it). Returns the state to load and what was done to the position embedding.
    Anything else is a UsageError naming the first tensor that does not fit.
    """
    own = model.state_dict()
    classifier = model.pretrained_cfg.get("classifier", "head") + "."
    fitted, pos_embed = {}, "as saved"
    for key, value in state.items():
        if key.startswith(classifier):
            continue
        if key not in own:
            raise _misfit(source, model, f"the model has no tensor '{key}'")
        if key == "pos_embed" and value.shape != own[key].shape and value.shape[-1] == own[key].shape[-1]:
            value, pos_embed = _resample_pos_embed(value, model, source)
        if not _same_kind(value, own[key]):
            raise _misfit(
                source, model, f"'{key}' is {value.dtype} in the file, {own[key].dtype} in the model"
            )
        if value.shape != own[key].shape:
            raise _misfit(
                source,
                model,
                f"'{key}' is {tuple(value.shape)} in the file, {tuple(own[key].shape)} in the model",
            )
        fitted[key] = value
    missing = [key for key in own if key not in fitted and not key.startswith(classifier)]
    if missing:
        raise _misfit(source, model, f"the file lacks '{missing[0]}' ({len(missing)} tensor(s) missing)")
    return fitted, pos_embed


@dataclasses.dataclass(frozen=True)
class _Loaded:
    described: str  # where the weights came from
    normalisation: str
    mean_std: tuple[tuple[float, ...], tuple[float, ...]] | None  # None: the model's default
    pos_embed: str


def _file_normalisation(folder: Path) -> tuple[str, tuple | None]:
    """Mean and std from the checkpoint's own config beside the weights, when it has one."""
    stats = hf_weights.preprocessor_stats(folder)
    if stats:
        return "file: preprocessor_config.json", stats
    cfg = (hf_weights.read_json(folder / "config.json") or {}).get("pretrained_cfg", {})
    if "mean" in cfg and "std" in cfg:  # a timm config.json (timm's push_to_hub / save)
        return "file: config.json pretrained_cfg", (tuple(cfg["mean"]), tuple(cfg["std"]))
    return "", None


def _load_local(model: nn.Module, location: Path, described: str) -> _Loaded:
    """Weights from a file or a save_pretrained folder into `model`, strictly; config checked first."""
    file = check_weights_file(str(location))
    config = hf_weights.read_json(file.parent / "config.json") if file.suffix != ".npz" else None
    if config and hf_weights.is_vit_config(config):
        hf_weights.check_config(config, model, str(location))
    state, pos_embed = fit_state(_read_state(file), model, str(location))
    model.load_state_dict(state, strict=False)  # strict in fit_state; the head stays the model's own
    if config and hf_weights.is_vit_config(config):
        hf_weights.set_layer_norm_eps(model, float(config.get("layer_norm_eps", 1e-12)))
    normalisation, mean_std = _file_normalisation(file.parent) if file.suffix != ".npz" else ("", None)
    return _Loaded(described, normalisation, mean_std, pos_embed)


def _zero_head(model: nn.Module) -> None:
    """The new head starts at zero, as in the ViT paper's fine-tuning (Sec. 3.1), whatever the weights."""
    head = model.get_classifier()
    if isinstance(head, nn.Linear):
        nn.init.zeros_(head.weight)
        nn.init.zeros_(head.bias)


def _strict_filter(model: nn.Module, source: str, outcome: dict[str, str]):
    """A filter for timm's load_pretrained that applies fit_state to the hub's state dict.

    A state dict in timm's own layout (every key a model key) gets the strict check alone; another
    layout (CLIP, DINOv2, ...) first goes through the model family's checkpoint_filter_fn, which converts
    it, and may resample its patch embedding, before the same check.
    """
    family = importlib.import_module(type(model).__module__)
    classifier = model.pretrained_cfg.get("classifier", "head") + "."

    def strict(state: dict[str, torch.Tensor], _model: nn.Module) -> dict[str, torch.Tensor]:
        own = model.state_dict()
        foreign = any(key not in own for key in state if not key.startswith(classifier))
        if foreign and hasattr(family, "checkpoint_filter_fn"):
            state = family.checkpoint_filter_fn(state, model)
        fitted, outcome["pos_embed"] = fit_state(state, model, source)
        return fitted | {key: value for key, value in own.items() if key.startswith(classifier)}

    return strict


def _from_hub(name: str, num_classes: int, img_size: int | None, model_args: dict) -> tuple:
    """timm's pretrained weights for `name` (Hugging Face hub, cached), checked like a local file."""
    model = _create(name, num_classes, img_size, model_args, pretrained=False)
    described = f"hub:{model.pretrained_cfg.get('hf_hub_id') or name}"
    # timm's custom .npz loader (custom_load, from a URL or file, not the hub) skips the filter.
    outcome = {"pos_embed": "unchecked: timm's own .npz loader"}
    with hub.cache_only_unless_reachable() as offline:
        try:
            timm.models.load_pretrained(
                model,
                num_classes=num_classes,
                in_chans=model_args.get("in_chans", 3),
                filter_fn=_strict_filter(model, described, outcome),
            )
        except UsageError:
            raise
        except Exception as error:  # network and hub errors
            where = hub.not_cached_note(offline)
            raise UsageError(
                f"could not fetch pretrained weights for {name} from the Hugging Face hub{where} "
                f"({type(error).__name__}); pass --weights FILE or --no-pretrained"
            ) from None
    return model, _Loaded(described, "", None, outcome["pos_embed"])


def create(
    name: str,
    num_classes: int,
    weights: str,
    img_size: int | None = None,
    model_args: dict[str, Any] | None = None,
) -> Backbone:
    """A backbone with a new, zero head for `num_classes`.

    `weights`: 'hub' (timm's pretrained weights), 'none' (random initialisation), a local weights file or
    save_pretrained folder, or 'hf:OWNER/NAME[@REVISION]' (a transformers ViT from the Hugging Face hub).
    Loading failures raise UsageError: a run never falls back silently to random weights.
    """
    model_args = model_args or {}
    if weights == "hub":
        model, loaded = _from_hub(name, num_classes, img_size, model_args)
    else:
        model = _create(name, num_classes, img_size, model_args, pretrained=False)
        if weights == "none":
            loaded = _Loaded("none (random initialisation)", "", None, "random initialisation")
        elif weights.startswith("hf:"):
            loaded = _load_local(model, hf_weights.download(weights), weights)
        else:
            loaded = _load_local(model, Path(weights), f"file:{weights}")
    _zero_head(model)
    config = timm.data.resolve_model_data_config(model)
    mean, std = loaded.mean_std or (tuple(config["mean"]), tuple(config["std"]))
    normalisation = loaded.normalisation or f"timm default for {name}"
    size = img_size or int(config["input_size"][-1])
    return Backbone(model, size, tuple(mean), tuple(std), loaded.described, normalisation, loaded.pos_embed)
