"""Image files from the user (for `predict`): RGB uint8 tensors, one error line per unreadable file.

Read with Pillow rather than torchvision.io, whose image decoding is deprecated since torchvision 0.29."""

from __future__ import annotations

import errno
import stat
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError


def read_image(path: Path) -> torch.Tensor:
    """One image file (PNG, JPEG, or any other format Pillow reads) as a (3, H, W) uint8 tensor.

    Grey and palette images become RGB; the alpha channel of RGBA images is dropped, so a transparent
    region shows whatever colour its pixels store; a photo's EXIF orientation is applied, as image
    viewers do. Raises ValueError naming the file if it cannot be read."""
    _check_is_file(path)
    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image)
            if image.mode in ("I", "I;16", "I;16B", "I;16L"):  # 16-bit grey: scale to 8 bits, not clip
                image = Image.fromarray((np.asarray(image, dtype=np.float64) / 257).round().astype(np.uint8))
            pixels = np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError) as error:  # not an image, or a damaged one
        raise ValueError(f"{path}: not a readable image ({error.__class__.__name__})") from None
    except Image.DecompressionBombError:  # Pillow's guard against images that would fill the memory
        raise ValueError(
            f"{path}: too many pixels to read safely (more than {2 * Image.MAX_IMAGE_PIXELS:,}, Pillow's limit)"
        ) from None
    return torch.from_numpy(pixels.copy()).permute(2, 0, 1).contiguous()


def _check_is_file(path: Path) -> None:
    """A ValueError that says what `path` is when it is not a regular file."""
    try:
        mode = path.stat().st_mode
    except OSError as error:
        what = {errno.ELOOP: "a symbolic link loop", errno.EACCES: "not readable (permission denied)"}
        raise ValueError(f"{path}: {what.get(error.errno, 'no such file')}") from None
    if stat.S_ISDIR(mode):
        raise ValueError(f"{path}: a directory, not an image file")
    if not stat.S_ISREG(mode):
        raise ValueError(f"{path}: not a regular file (a device, pipe or socket)")


def read_images(paths: list[str | Path]) -> tuple[list[tuple[Path, torch.Tensor]], list[str]]:
    """Every readable file as (path, (3, H, W) uint8 tensor), in the given order, plus one line per file
    that could not be read; one bad file does not stop the others."""
    images, errors = [], []
    for path in map(Path, paths):
        try:
            images.append((path, read_image(path)))
        except ValueError as error:
            errors.append(str(error))
    return images, errors


def center_square(image: torch.Tensor) -> torch.Tensor:
    """The largest centred square of a (C, H, W) image, so that resizing it to the model's square
    input keeps the aspect ratio (the usual evaluation crop, without the 0.875 crop fraction)."""
    height, width = image.shape[-2:]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    return image[..., top : top + side, left : left + side]
