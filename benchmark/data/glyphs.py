"""Procedurally rendered printed glyphs: an unlimited labelled set for pretraining, offline.

Templates are the glyphs of the fonts that ship with matplotlib (DejaVu Sans, Serif and Mono with their
bold and oblique faces, STIX General, Computer Modern), each drawn once with PIL at 40 px per em on a
64 px canvas, centred on its ink. Batches are drawn from them with tensor operations only: a random
template, size, position and small affine map, stroke width, then rendering at 8, 16 or 32 px and
upsampling to 32 px (as the benchmark's pipeline upsamples 8 px digits), blur, contrast, polarity and
noise. The ten digits are left out of the classes on purpose, so that handwritten digits stay a real
transfer target for a backbone pretrained on these glyphs.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

LATIN = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
GREEK = "ΓΔΘΛΞΠΣΦΨΩαβγδεζηθικλμνξπρστυφχψω"  # capitals that look Latin (A, B, E, ...) and omicron left out
SYMBOLS = "+−×÷=<>±∞√∫∂∇%&@#$?!*/()[]{}§¶€£¥→←↑↓≈≠"
CLASSES = LATIN + GREEK + SYMBOLS  # 52 + 33 + 39 = 124 classes, no digit among them
# Unicode faces: every class is looked up in their cmap.
UNICODE_FACES = [
    f"DejaVu{family}{face}.ttf"
    for family in ("Sans", "Serif", "SansMono")
    for face in (
        ("", "-Bold", "-Italic", "-BoldItalic")
        if family == "Serif"
        else ("", "-Bold", "-Oblique", "-BoldOblique")
    )
] + ["STIXGeneral.ttf", "STIXGeneralBol.ttf", "STIXGeneralItalic.ttf", "STIXGeneralBolIta.ttf"]
# matplotlib's Computer Modern (BaKoMa) faces keep TeX's encodings, where only the letters sit at their
# ASCII positions for certain (OT1, OML); they contribute Latin letters only.
LETTER_FACES = ["cmr10.ttf", "cmss10.ttf", "cmtt10.ttf", "cmti10.ttf", "cmb10.ttf", "cmmi10.ttf"]
CANVAS = 64  # px, side of a template
EM = 40  # px per em when drawing templates: capitals are ~29 px tall, the tallest glyphs ~50 px
SIZE = 32  # px, side of a rendered image
RENDER_SIZES = (8, 16, 32)  # px: drawn at this resolution, then upsampled bilinearly to SIZE


def font_dir() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


@dataclasses.dataclass(frozen=True)
class Templates:
    masks: torch.Tensor  # float32 (N, 1, CANVAS, CANVAS), ink coverage in [0, 1], centred on the ink
    extent: torch.Tensor  # float32 (N,), the ink's larger side as a fraction of CANVAS
    labels: torch.Tensor  # int64 (N,), index into CLASSES
    fonts: list[str]  # the font file of each template

    def __len__(self) -> int:
        return len(self.labels)


def _has(font_path: Path) -> set[str]:
    from fontTools.ttLib import TTFont

    return {chr(code) for code in TTFont(str(font_path)).getBestCmap()}


def _draw(font, char: str) -> np.ndarray | None:
    """One glyph's ink, centred on a CANVAS x CANVAS canvas; None if it draws nothing or is too big."""
    from PIL import Image, ImageDraw

    big = Image.new("L", (3 * CANVAS, 3 * CANVAS), 0)
    ImageDraw.Draw(big).text((CANVAS, CANVAS), char, fill=255, font=font)
    box = big.getbbox()
    if box is None:
        return None
    left, top, right, bottom = box
    width, height = right - left, bottom - top
    if max(width, height) > CANVAS - 4 or min(width, height) < 1:
        return None
    canvas = np.zeros((CANVAS, CANVAS), dtype=np.uint8)
    x, y = (CANVAS - width) // 2, (CANVAS - height) // 2
    canvas[y : y + height, x : x + width] = np.asarray(big.crop(box))
    return canvas


@functools.lru_cache(maxsize=1)
def templates() -> Templates:
    """Every (class, face) pair that the face can draw, drawn once (about 2 s) and cached."""
    from PIL import ImageFont

    masks, labels, fonts = [], [], []
    faces = [(name, CLASSES) for name in UNICODE_FACES] + [(name, LATIN) for name in LETTER_FACES]
    for name, wanted in faces:
        path = font_dir() / name
        font, available = ImageFont.truetype(str(path), EM), _has(path)
        for label, char in enumerate(CLASSES):
            if char not in wanted or char not in available:
                continue
            drawn = _draw(font, char)
            if drawn is not None:
                masks.append(drawn)
                labels.append(label)
                fonts.append(name)
    order = np.argsort(labels, kind="stable")  # by label: a class's templates are contiguous
    stack = torch.from_numpy(np.stack(masks)[order]).float().div_(255)[:, None]
    ink = stack[:, 0] > 0.1
    rows, cols = ink.any(2).sum(1), ink.any(1).sum(1)
    extent = torch.maximum(rows, cols).float() / CANVAS
    return Templates(stack, extent, torch.tensor(labels)[order], [fonts[i] for i in order])


@dataclasses.dataclass(frozen=True)
class Augment:
    """The ranges of the random rendering (uniform unless said otherwise)."""

    extent: tuple[float, float] = (0.55, 1.0)  # the ink's larger side, as a fraction of the image
    aspect: float = 0.1  # up to +-10% wider than tall or the reverse
    rotation: float = 12.0  # degrees, either way
    shear: float = 0.2  # horizontal shear factor, either way
    shift: float = 0.8  # share of the free margin the ink may move into
    stroke: tuple[float, float] = (-0.5, 1.0)  # -1: eroded by 1 px, 0: as drawn, 1: dilated by 1 px
    render: tuple[float, float, float] = (0.3, 0.3, 0.4)  # P(drawn at 8, 16, 32 px)
    blur: tuple[float, float] = (0.3, 0.8)  # P(blur), largest Gaussian sigma in px at SIZE
    background: tuple[float, float] = (0.0, 0.3)  # intensity in [0, 1]
    ink: tuple[float, float] = (0.6, 1.0)  # intensity in [0, 1]
    inverted: float = 0.2  # P(dark ink on a light background); digits are light on dark
    noise: float = 0.06  # largest standard deviation of the Gaussian pixel noise, intensity units


def _uniform(low: float, high: float, count: int, generator: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(count, generator=generator)


def _choice(probabilities: tuple[float, ...], count: int, generator: torch.Generator) -> torch.Tensor:
    return torch.multinomial(torch.tensor(probabilities), count, replacement=True, generator=generator)


def _sample_templates(bank: Templates, count: int, generator: torch.Generator) -> torch.Tensor:
    """Template indices: a class uniformly, then one of its faces uniformly (classes differ in faces)."""
    labels = torch.randint(0, len(CLASSES), (count,), generator=generator)
    per_class = torch.bincount(bank.labels, minlength=len(CLASSES))
    starts = torch.cumsum(per_class, 0) - per_class  # the bank is sorted by label
    pick = (torch.rand(count, generator=generator) * per_class[labels]).long()
    return starts[labels] + pick


def _stroke(ink: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Thinner (weight < 0, towards a 1 px erosion) or bolder (weight > 0, towards a 1 px dilation) strokes,
    at SIZE resolution; weight 0 leaves the image as drawn."""
    bold, thin = F.max_pool2d(ink, 3, 1, 1), -F.max_pool2d(-ink, 3, 1, 1)
    weight = weight[:, None, None, None]
    return ink + weight.clamp(min=0) * (bold - ink) + (-weight).clamp(min=0) * (thin - ink)


def _affine(extent: torch.Tensor, spec: Augment, generator: torch.Generator) -> torch.Tensor:
    """(B, 2, 3) maps from output to template coordinates (both normalised to [-1, 1])."""
    count = len(extent)
    target = _uniform(*spec.extent, count, generator)
    zoom = target / extent  # > 1 enlarges
    aspect = _uniform(-spec.aspect, spec.aspect, count, generator)
    angle = _uniform(-spec.rotation, spec.rotation, count, generator) * math.pi / 180
    shear = _uniform(-spec.shear, spec.shear, count, generator)
    cos, sin = torch.cos(angle), torch.sin(angle)
    rotate = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
    shear_matrix = torch.eye(2).repeat(count, 1, 1)
    shear_matrix[:, 0, 1] = shear
    scale = torch.diag_embed(torch.stack([1 / (zoom * (1 + aspect)), 1 / (zoom * (1 - aspect))], -1))
    linear = rotate @ shear_matrix @ scale
    margin = (1 - target).clamp(min=0) * spec.shift  # normalised units: the image spans 2
    shift = torch.stack([_uniform(-1, 1, count, generator), _uniform(-1, 1, count, generator)], -1)
    offset = -(linear @ (shift * margin[:, None])[..., None])
    return torch.cat([linear, offset], -1)


def _render(drawn: torch.Tensor, sizes: torch.Tensor) -> torch.Tensor:
    """Each image area-averaged to its render size, then upsampled bilinearly back to SIZE px."""
    out = drawn
    for size in RENDER_SIZES:
        if size == SIZE:
            continue
        low = F.avg_pool2d(drawn, SIZE // size)
        up = F.interpolate(low, size=(SIZE, SIZE), mode="bilinear", align_corners=False, antialias=False)
        out = torch.where((sizes == size)[:, None, None, None], up, out)
    return out


def _blur(images: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """A separable Gaussian per image (5 taps); sigma 0 leaves an image as it is."""
    taps = torch.arange(-2, 3, dtype=torch.float32)
    kernel = torch.exp(-(taps**2) / (2 * sigma.clamp(min=1e-3)[:, None] ** 2))
    kernel = kernel / kernel.sum(1, keepdim=True)  # (B, 5)
    count = len(images)
    flat = images.reshape(1, count, SIZE, SIZE)
    flat = F.conv2d(F.pad(flat, (2, 2, 0, 0), mode="replicate"), kernel[:, None, None, :], groups=count)
    flat = F.conv2d(F.pad(flat, (0, 0, 2, 2), mode="replicate"), kernel[:, None, :, None], groups=count)
    return flat.reshape(count, 1, SIZE, SIZE)


def render(count: int, generator: torch.Generator, spec: Augment | None = None) -> tuple:
    """`count` random glyph images, uint8 (count, 3, SIZE, SIZE) grey as RGB, and their int64 labels.

    Deterministic for the generator's state: every random number comes from it, on the CPU."""
    spec, bank = spec or Augment(), templates()
    index = _sample_templates(bank, count, generator)
    theta = _affine(bank.extent[index], spec, generator)
    grid = F.affine_grid(theta, [count, 1, SIZE, SIZE], align_corners=False)
    drawn = F.grid_sample(bank.masks[index], grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    drawn = _stroke(drawn, _uniform(*spec.stroke, count, generator))
    sizes = torch.tensor(RENDER_SIZES)[_choice(spec.render, count, generator)]
    ink = _render(drawn, sizes)
    blurred = torch.rand(count, generator=generator) < spec.blur[0]
    ink = _blur(ink, torch.where(blurred, _uniform(0, spec.blur[1], count, generator), 0.0))
    background = _uniform(*spec.background, count, generator)[:, None, None, None]
    colour = _uniform(*spec.ink, count, generator)[:, None, None, None]
    inverted = (torch.rand(count, generator=generator) < spec.inverted)[:, None, None, None]
    background, colour = torch.where(inverted, colour, background), torch.where(inverted, background, colour)
    pixels = background + (colour - background) * ink.clamp(0, 1)
    noise = _uniform(0, spec.noise, count, generator)[:, None, None, None]
    pixels = pixels + noise * torch.randn(pixels.shape, generator=generator)
    images = (pixels.clamp(0, 1) * 255).round().to(torch.uint8).expand(-1, 3, -1, -1).contiguous()
    return images, bank.labels[index]
