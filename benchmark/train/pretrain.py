"""`python -m benchmark pretrain`: supervised pretraining of a small ViT on rendered glyphs, offline.

The recipe that made the shipped backbone (weights/glyph_vit_p8_d2_w64.safetensors) is `Recipe()`: the
demo's architecture (timm ViT, patch 8, depth 2, width 64, 4 heads, 32 px) with jax-style initialisation,
AdamW, a linear warm-up then cosine decay, on a fresh batch of `benchmark.data.glyphs` images every step. The
file is a plain timm state dict (classifier included; `--weights` drops it and loads the rest strictly);
a JSON beside it records the recipe, the data, the training curve, the accuracy and the software.
Deterministic for a seed on one machine and thread count: every random number comes from seeded
generators on the CPU, and the run uses a fixed number of threads (1 by default).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import timm
import torch
from safetensors.torch import save_file
from torch import nn

from benchmark.data import glyphs
from benchmark.data.batches import to_model_input
from benchmark.provenance import device_name, provenance
from benchmark.train.step import lr_factor
from benchmark.weights.backbone import file_sha256

VALIDATION_SEED = 20240518  # fixed: the validation glyphs are the same for every seed and recipe


@dataclasses.dataclass(frozen=True)
class Recipe:
    model: str = "vit_tiny_patch16_224"
    model_args: tuple[tuple[str, int], ...] = (
        ("patch_size", 8),
        ("depth", 2),
        ("embed_dim", 64),
        ("num_heads", 4),
    )
    img_size: int = 32  # px
    steps: int = 3000  # optimiser steps, one fresh batch each: 384,000 images at batch 128
    batch_size: int = 128
    lr: float = 3e-3  # AdamW peak learning rate
    weight_decay: float = 0.05  # not on norms, biases, position embedding and class token (timm's groups)
    warmup_steps: int = 200  # linear warm-up, then cosine decay to zero
    clip_grad_norm: float = 1.0  # global L2 norm
    seed: int = 0  # initialisation and training glyphs
    val_images: int = 5000  # rendered once with VALIDATION_SEED
    eval_every: int = 250  # steps between points of the training curve
    threads: int = 1  # torch CPU threads: fixed, so that a seed gives the same tensors on one machine


@dataclasses.dataclass
class Pretrained:
    model: nn.Module
    curve: list[dict[str, float]]  # one point per evaluation: step, train loss, val top-1, lr, seconds
    val_top1: float  # fraction of the validation glyphs classified correctly after the last step
    seconds: float  # wall-clock time of the training loop, evaluations included


def make_model(recipe: Recipe) -> nn.Module:
    """The architecture with jax-style initialisation (timm's `weight_init="jax"`: zero head, truncated
    normal position embedding, lecun-normal patch embedding) and one output per glyph class."""
    return timm.create_model(
        recipe.model,
        num_classes=len(glyphs.CLASSES),
        img_size=recipe.img_size,
        weight_init="jax",
        **dict(recipe.model_args),
    )


def _normalise(model: nn.Module, recipe: Recipe) -> Callable[[torch.Tensor], torch.Tensor]:
    """uint8 images to model input exactly as the benchmark's pipeline does for this model (timm's mean
    and std for it, bilinear resizing), so that fine-tuning sees what pretraining saw."""
    config = timm.data.resolve_model_data_config(model)
    mean = torch.tensor(config["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(config["std"]).view(1, -1, 1, 1)
    return lambda images: to_model_input(images, recipe.img_size, mean, std)


def _accuracy(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        correct = sum(
            int((model(inputs[start : start + 500]).argmax(1) == labels[start : start + 500]).sum())
            for start in range(0, len(labels), 500)
        )
    model.train()
    return correct / len(labels)


def train(recipe: Recipe, log: Callable[[str], None] = print) -> Pretrained:
    """Pretrain from scratch with `recipe`; runs with `recipe.threads` threads and restores the count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(recipe.threads)
    try:
        return _train(recipe, log)
    finally:
        torch.set_num_threads(threads)


def _train(recipe: Recipe, log: Callable[[str], None]) -> Pretrained:
    torch.manual_seed(recipe.seed)  # the initialisation
    model = make_model(recipe)
    normalise = _normalise(model, recipe)
    val_images, val_labels = glyphs.render(recipe.val_images, torch.Generator().manual_seed(VALIDATION_SEED))
    val_inputs = normalise(val_images)
    data = torch.Generator().manual_seed(recipe.seed)  # the training glyphs
    optimizer = timm.optim.create_optimizer_v2(
        model, opt="adamw", lr=recipe.lr, weight_decay=recipe.weight_decay
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, recipe.warmup_steps, recipe.steps)
    )
    curve, losses, start = [], [], time.perf_counter()
    model.train()
    for step in range(1, recipe.steps + 1):
        images, labels = glyphs.render(recipe.batch_size, data)
        loss = nn.functional.cross_entropy(model(normalise(images)), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), recipe.clip_grad_norm)
        optimizer.step()
        lr = schedule.get_last_lr()[0]  # the rate this step used
        schedule.step()
        losses.append(float(loss.detach()))
        if step % recipe.eval_every == 0 or step == recipe.steps:
            point = {
                "step": step,
                "train_loss": sum(losses) / len(losses),  # mean over the steps since the last point
                "val_top1": _accuracy(model, val_inputs, val_labels),
                "lr": lr,
                "seconds": time.perf_counter() - start,
            }
            curve.append(point)
            losses = []
            log(
                f"step {step}/{recipe.steps}: train loss {point['train_loss']:.3f}, "
                f"val top-1 {point['val_top1']:.2%}, {point['seconds']:.0f} s"
            )
    return Pretrained(model, curve, curve[-1]["val_top1"], time.perf_counter() - start)


def describe_data() -> dict[str, Any]:
    bank = glyphs.templates()
    return {
        "classes": glyphs.CLASSES,
        "num_classes": len(glyphs.CLASSES),
        "templates": len(bank),
        "faces": sorted(set(bank.fonts)),
        "font_dir": "matplotlib.get_data_path()/fonts/ttf",
        "augment": dataclasses.asdict(glyphs.Augment()),
        "render_sizes_px": list(glyphs.RENDER_SIZES),
        "image_px": glyphs.SIZE,
        "validation": f"{Recipe.val_images} images by default, rendered with seed {VALIDATION_SEED}",
    }


def save(result: Pretrained, recipe: Recipe, path: Path, command: str) -> dict[str, Any]:
    """The weights as safetensors at `path` and a JSON of how they were made beside it (same stem)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {key: value.detach().contiguous() for key, value in result.model.state_dict().items()}
    save_file(state, str(path), metadata={"format": "pt"})
    software = provenance()
    record = {
        "file": path.name,
        "bytes": path.stat().st_size,
        "sha256": file_sha256(path),
        "parameters": sum(value.numel() for value in state.values()),
        "command": command,
        "recipe": dataclasses.asdict(recipe) | {"model_args": dict(recipe.model_args)},
        "data": describe_data(),
        "val_top1": result.val_top1,
        "train_seconds": round(result.seconds, 1),
        "curve": result.curve,
        "cpu": device_name(torch.device("cpu")).rsplit(" (", 1)[0] + f" ({recipe.threads} threads)",
        "torch": software["torch_version"],
        "timm": software["timm_version"],
        "python": software["python_version"],
        "git_commit": software["git_commit"],
        "date": datetime.date.today().isoformat(),
    }
    path.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    return record
