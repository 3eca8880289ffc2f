"""The inspection's figures, drawn from tensors: attention rollout, position-embedding similarity, patch
filters, sample predictions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from benchmark.results.store import write_file

WRONG = "#c0392b"  # red: a wrong prediction
DPI = 130  # as the report's figures (benchmark/report/plots.py)


def to_pixels(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """Model inputs (B, C, H, W) back to displayable pixels (B, H, W, C) in [0, 1]; C = 1 is squeezed."""
    shape = (1, -1, 1, 1)
    pixels = images.detach().float().cpu() * torch.tensor(std).view(shape) + torch.tensor(mean).view(shape)
    pixels = pixels.clamp(0, 1).permute(0, 2, 3, 1).numpy()
    return pixels[..., 0] if pixels.shape[-1] == 1 else pixels


def _bare(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


def label_lines(true: str, predicted: str, confidence: float | None = None) -> str:
    suffix = f" ({confidence:.0%})" if confidence is not None else ""
    return f"true: {true}\npred: {predicted}{suffix}"


def rollout_figure(pixels: np.ndarray, maps: torch.Tensor, titles: list[str], wrong: list[bool]) -> Figure:
    count = len(pixels)
    fig = Figure(figsize=(1.7 * count + 1.2, 4.4), layout="constrained")
    axes = fig.subplots(2, count, squeeze=False)
    height, width = pixels.shape[1:3]
    for column in range(count):
        top, bottom = axes[0, column], axes[1, column]
        top.imshow(pixels[column], cmap="gray", vmin=0, vmax=1)
        top.set_title(titles[column], fontsize=8, color=WRONG if wrong[column] else "black")
        bottom.imshow(pixels[column], cmap="gray", vmin=0, vmax=1)
        # Each map relative to its own maximum, so the pattern shows even where attention is spread out.
        heat = bottom.imshow(
            (maps[column] / maps[column].max()).numpy(),
            cmap="inferno",
            vmin=0,
            vmax=1,
            alpha=0.65,
            interpolation="nearest",  # one cell per patch, as the model sees the image
            extent=(-0.5, width - 0.5, height - 0.5, -0.5),
        )
        _bare(top)
        _bare(bottom)
    axes[0, 0].set_ylabel("test image")
    axes[1, 0].set_ylabel("rollout overlay")
    fig.colorbar(heat, ax=axes[1, :].tolist(), shrink=0.9, label="attention / image's maximum")
    fig.suptitle("Attention rollout from the class token through all blocks (Abnar & Zuidema 2020)")
    return fig


def _grid_ticks(ax, size: int, spacing: int, axis: str) -> None:
    """Tick at the centre of every tile (every few when there are many), labelled from 1."""
    step = math.ceil(size / 16)
    positions = [index * spacing + (size - 1) / 2 for index in range(0, size, step)]
    labels = [str(index + 1) for index in range(0, size, step)]
    if axis == "x":
        ax.set_xticks(positions, labels, fontsize=8)
    else:
        ax.set_yticks(positions, labels, fontsize=8)


def position_figure(similarity: torch.Tensor, grid: tuple[int, int]) -> Figure:
    """ViT paper, Fig. 7 (centre): tile (r, c) is the similarity of position (r, c) to all positions."""
    rows, columns = grid
    maps = similarity.reshape(rows, columns, rows, columns).numpy()
    # All tiles in one image with a one-pixel blank gap, far faster than one axes per position.
    mosaic = np.full((rows * (rows + 1) - 1, columns * (columns + 1) - 1), np.nan)
    for row in range(rows):
        for column in range(columns):
            top, left = row * (rows + 1), column * (columns + 1)
            mosaic[top : top + rows, left : left + columns] = maps[row, column]
    fig = Figure(figsize=(7.5, 6.5), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(mosaic, cmap="viridis", vmin=-1, vmax=1, interpolation="nearest")
    _grid_ticks(ax, columns, columns + 1, "x")
    _grid_ticks(ax, rows, rows + 1, "y")
    ax.set_xlabel("input patch column")
    ax.set_ylabel("input patch row")
    for spine in ax.spines.values():
        spine.set_visible(False)
    fig.colorbar(image, ax=ax, shrink=0.8, label="cosine similarity")
    ax.set_title(
        "Position embedding similarity (ViT paper, Fig. 7 centre)\n"
        "each tile: one position's embedding vs. every position's",
        fontsize=11,
    )
    return fig


def _tile_grid(count: int, max_columns: int, inches: tuple[float, float, float]) -> tuple[Figure, list]:
    """A figure of `count` bare tiles in rows of at most `max_columns`; spare tiles hidden.
    `inches`: width per column, height per row, and extra height for the title."""
    columns = min(count, max_columns)
    rows = math.ceil(count / columns)
    width, height, title = inches
    fig = Figure(figsize=(width * columns, height * rows + title), layout="constrained")
    axes = list(fig.subplots(rows, columns, squeeze=False).flat)
    for index, ax in enumerate(axes):
        _bare(ax)
        if index >= count:
            ax.axis("off")
    return fig, axes


def filters_figure(components: torch.Tensor) -> Figure:
    count, channels = components.shape[:2]
    if channels not in (1, 3):
        raise ValueError(
            f"patch filters can be shown as RGB or grey tiles only; the model has {channels} channels"
        )
    fig, axes = _tile_grid(count, 7, (1.25, 1.35, 0.8))  # 4 rows of 7 for 28 components, as in the paper
    for index, ax in enumerate(axes[:count]):
        tile = components[index].permute(1, 2, 0).numpy()
        ax.imshow(
            tile[..., 0] if channels == 1 else tile, cmap="gray", vmin=0, vmax=1, interpolation="nearest"
        )
        ax.set_title(f"PC {index + 1}", fontsize=8)
    fig.suptitle(
        f"Patch-embedding filters: first {count} principal components (ViT paper, Fig. 7 left)\n"
        "each scaled to [0, 1]; sign arbitrary",
        fontsize=10,
    )
    return fig


def predictions_figure(
    pixels: np.ndarray, titles: list[str], wrong: list[bool], wrong_count: int, total: int
) -> Figure:
    count = len(pixels)
    fig, axes = _tile_grid(count, 6, (1.9, 2.15, 0.6))
    for index, ax in enumerate(axes[:count]):
        ax.imshow(pixels[index], cmap="gray", vmin=0, vmax=1)
        colour = WRONG if wrong[index] else "black"
        ax.set_title(titles[index], fontsize=8, color=colour)
        for spine in ax.spines.values():  # a red frame marks a mistake
            spine.set(color=colour, linewidth=3 if wrong[index] else 0.5)
    fig.suptitle(
        f"Test predictions: {wrong_count} of {total} wrong (red); "
        f"{count} shown, most confident mistakes first",
        fontsize=10,
    )
    return fig


def save(fig: Figure, path: Path) -> Path:
    return write_file(path, lambda file: fig.savefig(file, format="png", dpi=DPI, bbox_inches="tight"))
