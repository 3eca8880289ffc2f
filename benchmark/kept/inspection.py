"""A look inside a trained model: attention rollout, position-embedding similarity, patch-embedding
filters (ViT paper, Dosovitskiy et al. 2021, Fig. 7), sample predictions, and top-k class probabilities.

Everything works on a plain model and tensors. Images are the model's input (normalised with the
model's `mean` and `std`); the figures undo the normalisation for display."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from benchmark.kept.figures import (
    filters_figure,
    label_lines,
    position_figure,
    predictions_figure,
    rollout_figure,
    save,
    to_pixels,
)

ROLLOUT_IMAGES = 8  # images in attention_rollout.png


FILTER_COMPONENTS = 28  # principal components in patch_filters.png, as in the ViT paper's Fig. 7 (left)


SAMPLE_IMAGES = 24  # images in sample_predictions.png


class Inspection(NamedTuple):
    paths: list[Path]  # the PNG files written
    notes: list[str]  # one line per figure that does not apply to this model, saying why


def _require_vit(model: nn.Module, what: str) -> VisionTransformer:
    if not isinstance(model, VisionTransformer):
        raise ValueError(f"{what} needs a timm VisionTransformer; got {type(model).__name__}")
    return model


@contextlib.contextmanager
def _evaluating(model: nn.Module) -> Iterator[None]:
    """Eval mode (no dropout) and no gradients for the duration; the training flag is restored after."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


@contextlib.contextmanager
def _captured_attention(vit: VisionTransformer) -> Iterator[list[torch.Tensor]]:
    """Collects each block's attention probabilities (B, heads, N, N) during a forward pass.

    timm's fused path (scaled_dot_product_attention) never materialises the probabilities, so the
    explicit path is switched on for the duration; it computes the same output. The probabilities are
    the input of `attn.attn_drop` (after softmax, before dropout). Restored on exit, also on errors."""
    modules = [getattr(block, "attn", None) for block in vit.blocks]
    if not all(hasattr(attn, "fused_attn") and isinstance(attn.attn_drop, nn.Module) for attn in modules):
        raise ValueError(
            "attention rollout needs timm Attention modules (block.attn with fused_attn and attn_drop)"
        )
    captured: list[torch.Tensor] = []
    saved = [attn.fused_attn for attn in modules]
    handles = []
    try:
        for attn in modules:
            attn.fused_attn = False
            handles.append(
                attn.attn_drop.register_forward_hook(lambda _m, inputs, _out: captured.append(inputs[0]))
            )
        yield captured
    finally:
        for handle in handles:
            handle.remove()
        for attn, fused in zip(modules, saved, strict=True):
            attn.fused_attn = fused


def rollout_from_attention(attentions: Sequence[torch.Tensor], num_prefix_tokens: int) -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema 2020, eq. in sec. 3) of per-block attention probabilities
    (B, heads, N, N), first block first: per block the mean over heads plus the identity (the residual
    connection), rows renormalised; multiplied through the blocks. Returns the class token's row over
    the patch tokens (B, N - num_prefix_tokens), renormalised to sum to 1 over the patches."""
    tokens = attentions[0].shape[-1]
    identity = torch.eye(tokens, dtype=torch.float64, device=attentions[0].device)
    joint = identity
    for attention in attentions:
        mixed = attention.double().mean(dim=1) + identity
        joint = (mixed / mixed.sum(dim=-1, keepdim=True)) @ joint  # later blocks act on earlier mixing
    from_class = joint[:, 0, num_prefix_tokens:]  # timm puts the class token first, then register tokens
    return (from_class / from_class.sum(dim=-1, keepdim=True)).float()


def attention_rollout(model: nn.Module, images: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
    """Attention rollout from the class token for each image: (B, grid_h, grid_w) on the CPU,
    non-negative, each map summing to 1 over the patch positions. Runs on the model's device in batches
    of `batch_size` (every block's attention is held at once: for ViT-B/16 at 224 px, 22 MB per image).
    The model's output, mode and settings are left as they were."""
    vit = _require_vit(model, "attention rollout")
    if vit.cls_token is None:
        raise ValueError("attention rollout from the class token needs a model with a class token")
    grid_h, grid_w = vit.patch_embed.dynamic_feat_size(tuple(images.shape[-2:]))
    device = next(vit.parameters()).device
    maps = []
    for batch in images.split(batch_size):
        with _evaluating(vit), _captured_attention(vit) as attentions:
            vit(batch.to(device))
        maps.append(rollout_from_attention(attentions, vit.num_prefix_tokens).cpu())
    return torch.cat(maps).reshape(len(images), grid_h, grid_w)


def position_similarity(model: nn.Module) -> torch.Tensor:
    """Cosine similarity (P, P) between the learned position embeddings of the P patch positions
    (row-major over the patch grid; class and register token positions excluded)."""
    vit = _require_vit(model, "position-embedding similarity")
    if vit.pos_embed is None:
        raise ValueError(
            "position-embedding similarity needs learned absolute position embeddings (pos_embed)"
        )
    first = 0 if vit.no_embed_class else vit.num_prefix_tokens
    unit = F.normalize(vit.pos_embed.detach()[0, first:].double(), dim=-1)
    return (unit @ unit.T).float().cpu()  # float64 first, so the diagonal rounds to exactly 1


def patch_filter_components(model: nn.Module, k: int = FILTER_COMPONENTS) -> torch.Tensor:
    """The first k principal components (k, channels, patch_h, patch_w) of the patch-embedding filters
    (ViT paper, Fig. 7 left), each min-max scaled to [0, 1] for display as an image tile.

    The samples are the embed_dim filters of the patch projection, each flattened to channels*ph*pw
    values and centred; the components are the right singular vectors of that matrix in order of
    singular value. k is capped at min(embed_dim - 1, channels*ph*pw): beyond that the centred matrix
    has no more directions. Each component's sign is fixed so that its largest-magnitude entry is
    positive (scikit-learn's convention; the sign of a principal component is otherwise arbitrary)."""
    if k < 1:
        raise ValueError(f"k (principal components) must be at least 1; got {k}")
    proj = getattr(_require_vit(model, "patch-filter components").patch_embed, "proj", None)
    if not isinstance(proj, nn.Conv2d):
        raise ValueError("patch-filter components need a convolutional patch embedding (patch_embed.proj)")
    weights = proj.weight.detach().double().cpu()  # (embed_dim, channels, ph, pw)
    flat = weights.flatten(start_dim=1)
    _, _, components = torch.linalg.svd(flat - flat.mean(dim=0), full_matrices=False)
    components = components[: min(k, flat.shape[0] - 1, flat.shape[1])]
    largest = components.abs().argmax(dim=1, keepdim=True)
    components = components * components.gather(1, largest).sign()
    low = components.min(dim=1, keepdim=True).values
    high = components.max(dim=1, keepdim=True).values
    scaled = (components - low) / (high - low).clamp(min=1e-12)
    return scaled.reshape(len(scaled), *weights.shape[1:]).float()


def class_probabilities(model: nn.Module, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Softmax of the model's logits (B, classes), in eval mode on the model's device; on the CPU."""
    device = next(model.parameters()).device
    with _evaluating(model):
        batches = [model(batch.to(device)).float().softmax(dim=1).cpu() for batch in images.split(batch_size)]
    return torch.cat(batches)


def top_k(logits: torch.Tensor, class_names: Sequence[str], k: int = 5) -> list[list[tuple[str, float]]]:
    """The k most probable classes of each row of logits (B, classes), as (class name, softmax
    probability), most probable first; k is capped at the number of classes."""
    if logits.dim() != 2 or logits.shape[1] != len(class_names):
        raise ValueError(
            f"logits must be (images, {len(class_names)} classes) to match class_names; "
            f"got shape {tuple(logits.shape)}"
        )
    if k < 1:
        raise ValueError(f"k must be at least 1; got {k}")
    values, indices = logits.float().softmax(dim=1).topk(min(k, len(class_names)), dim=1)
    return [
        [(class_names[index], float(value)) for value, index in zip(row_values, row_indices, strict=True)]
        for row_values, row_indices in zip(values.tolist(), indices.tolist(), strict=True)
    ]


def sample_for_display(probabilities: torch.Tensor, labels: torch.Tensor, count: int) -> list[int]:
    """Indices of `count` examples to show: mistakes first, most confident first, then right
    predictions in their given order. Mistakes fill half the slots, so that right ones show too,
    or more when there are too few right ones to fill the rest."""
    confidence, predicted = probabilities.max(dim=1)
    wrong = (predicted != labels).nonzero().flatten()
    wrong = wrong[confidence[wrong].argsort(descending=True, stable=True)].tolist()
    right = (predicted == labels).nonzero().flatten().tolist()
    first = wrong[: max(count // 2, count - len(right))]
    return first + right[: count - len(first)]


def _vit_figures(
    model: nn.Module, images: torch.Tensor, titles: list[str], wrong: list[bool], pixels: np.ndarray
) -> dict[str, Figure | str]:
    """Each ViT figure by file name, or the one-line reason it does not apply to this model."""
    makers = {
        "attention_rollout.png": lambda: rollout_figure(
            pixels[:ROLLOUT_IMAGES],
            attention_rollout(model, images[:ROLLOUT_IMAGES]),
            titles[:ROLLOUT_IMAGES],
            wrong[:ROLLOUT_IMAGES],
        ),
        "position_similarity.png": lambda: position_figure(
            position_similarity(model), tuple(model.patch_embed.grid_size)
        ),
        "patch_filters.png": lambda: filters_figure(patch_filter_components(model)),
    }
    figures: dict[str, Figure | str] = {}
    for name, make in makers.items():
        try:
            figures[name] = make()
        except ValueError as error:  # the figure does not apply to this model; say why
            figures[name] = f"{name} not drawn: {error}"
    return figures


def write_inspection(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    probabilities: torch.Tensor | None,
    class_names: Sequence[str],
    mean: Sequence[float],
    std: Sequence[float],
    out_dir: Path,
    prefix: str = "",
) -> Inspection:
    """Writes `{prefix}attention_rollout.png`, `{prefix}position_similarity.png`, `{prefix}patch_filters.png`
    and `{prefix}sample_predictions.png` into out_dir (created if missing).

    images: test images as the model's input (B, C, H, W), normalised with mean and std; labels: (B,)
    true class indices; probabilities: (B, classes), or None to compute them with the model. The first
    8 images get rollout maps; sample predictions show up to 24, mistakes first. A model that is not a
    timm VisionTransformer gets only sample_predictions.png, and a note per figure it does not get."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    labels = labels.cpu()
    probabilities = class_probabilities(model, images) if probabilities is None else probabilities.cpu()
    confidence, predicted = probabilities.max(dim=1)
    titles = [
        label_lines(class_names[true], class_names[guess], float(sure))
        for true, guess, sure in zip(labels.tolist(), predicted.tolist(), confidence, strict=True)
    ]
    wrong = (predicted != labels).tolist()
    pixels = to_pixels(images, mean, std)
    if isinstance(model, VisionTransformer):
        figures = _vit_figures(model, images, titles, wrong, pixels)
    else:
        reason = f"needs a timm VisionTransformer; got {type(model).__name__}"
        names = ("attention_rollout.png", "position_similarity.png", "patch_filters.png")
        figures = {name: f"{name} not drawn: {reason}" for name in names}
    order = sample_for_display(probabilities, labels, SAMPLE_IMAGES)
    figures["sample_predictions.png"] = predictions_figure(
        pixels[order], [titles[i] for i in order], [wrong[i] for i in order], sum(wrong), len(labels)
    )
    paths = [
        save(fig, out_dir / f"{prefix}{name}") for name, fig in figures.items() if isinstance(fig, Figure)
    ]
    return Inspection(paths, [note for note in figures.values() if isinstance(note, str)])


def write_backbone_figures(
    model: nn.Module,
    images: torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    out_dir: Path,
    prefix: str = "",
) -> Inspection:
    """The figures that need no trained head (attention rollout, position similarity, patch filters), for
    a backbone that was never fine-tuned; a model that is not a timm ViT gets notes only."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not isinstance(model, VisionTransformer):
        reason = f"needs a timm VisionTransformer; got {type(model).__name__}"
        return Inspection(
            [],
            [
                f"{name} not drawn: {reason}"
                for name in ("attention_rollout.png", "position_similarity.png", "patch_filters.png")
            ],
        )
    count = len(images)
    figures = _vit_figures(model, images, [""] * count, [False] * count, to_pixels(images, mean, std))
    paths = [
        save(fig, out_dir / f"{prefix}{name}") for name, fig in figures.items() if isinstance(fig, Figure)
    ]
    return Inspection(paths, [note for note in figures.values() if isinstance(note, str)])
