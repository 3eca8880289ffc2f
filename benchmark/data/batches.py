"""Batches built on the training device from uint8 tensors: index, augment, resize, normalise.

No per-image Python work: a batch is a handful of tensor operations wherever the data lives.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

CROP_PADDING_FRACTION = 1 / 8  # of the native side: the usual 4 px for 32 px CIFAR, 1 px for 8 px digits


def random_crop_flip(images: torch.Tensor, generator: torch.Generator, flip: bool = True) -> torch.Tensor:
    """Random crop with zero padding and (if `flip`) random horizontal flip, per image. The offsets and
    flips are drawn on `generator`'s device (the runner's is a CPU generator, so that a seed augments alike
    on every device) and then moved to the images' device."""
    batch, _, height, width = images.shape
    padding = max(1, round(height * CROP_PADDING_FRACTION))
    padded = F.pad(images, (padding,) * 4)
    device, drawn_on = images.device, generator.device
    top = torch.randint(0, 2 * padding + 1, (batch,), generator=generator, device=drawn_on).to(device)
    left = torch.randint(0, 2 * padding + 1, (batch,), generator=generator, device=drawn_on).to(device)
    rows = (top[:, None] + torch.arange(height, device=device))[:, None, :, None]  # (B, 1, H, 1)
    cols = (left[:, None] + torch.arange(width, device=device))[:, None, None, :]  # (B, 1, 1, W)
    index = torch.arange(batch, device=device)[:, None, None, None]
    channel = torch.arange(images.shape[1], device=device)[None, :, None, None]
    cropped = padded[index, channel, rows, cols]
    if not flip:
        return cropped
    flip = torch.rand(batch, generator=generator, device=drawn_on).to(device) < 0.5
    return torch.where(flip[:, None, None, None], cropped.flip(-1), cropped)


def to_model_input(images: torch.Tensor, size: int, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 (B, C, H, W) to float, resized to `size` x `size` and normalised with the model's statistics."""
    pixels = images.float().div_(255)
    if pixels.shape[-2:] != (size, size):
        pixels = F.interpolate(
            pixels, size=(size, size), mode="bilinear", align_corners=False, antialias=False
        )
    return (pixels - mean) / std


class Pipeline:
    """Turns index tensors into model-ready batches with the backbone's own input size and statistics."""

    def __init__(
        self,
        size: int,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        device: torch.device,
        flip: bool = True,
    ) -> None:
        self.size, self.flip = size, flip
        self.mean = torch.tensor(mean, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, device=device).view(1, -1, 1, 1)

    def __call__(
        self, images: torch.Tensor, augment: bool = False, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        if augment:
            images = random_crop_flip(images, generator, self.flip)
        return to_model_input(images, self.size, self.mean, self.std)


def steps_per_epoch(count: int, batch_size: int) -> int:
    """Full batches only, and at least one (a batch is at most the whole split)."""
    return count // min(batch_size, count)


def epoch_order(
    count: int,
    batch_size: int,
    generator: torch.Generator,
    rank: int = 0,
    world_size: int = 1,
    device: torch.device | None = None,
) -> list[torch.Tensor]:
    """This process's index batches for one epoch, on `device`: a shuffled order drawn with `generator`
    (a CPU generator, so the order does not depend on the device), full batches only (at least one),
    each global batch split evenly across the `world_size` processes."""
    batch_size = min(batch_size, count)
    order = torch.randperm(count, generator=generator, device=generator.device).to(device)
    per_rank = batch_size // world_size
    return [
        order[start + rank * per_rank : start + (rank + 1) * per_rank]
        for start in range(0, steps_per_epoch(count, batch_size) * batch_size, batch_size)
    ]
