"""Exact trainable-parameter counts of every strategy on the tiny ViT of tests/helpers.py, worked out by hand
from its shape (never read from a model), for the tests that check counts."""

from __future__ import annotations

from tests.helpers import TINY

CLASSES = 10


def architecture_counts() -> dict[str, int]:
    """Parameter counts of the tiny ViT, worked out by hand from its shape (not from the model)."""
    width, depth, patch = TINY["embed_dim"], TINY["depth"], TINY["patch_size"]
    tokens = (16 // patch) ** 2 + 1  # patches plus the class token
    norm = 2 * width
    block = (
        2 * norm
        + (width * 3 * width + 3 * width)
        + (width * width + width)
        + (width * 4 * width + 4 * width)
        + (4 * width * width + width)
    )
    embed = 3 * patch * patch * width + width + width + tokens * width
    head = width * CLASSES + CLASSES
    return {"block": block, "norm": norm, "embed": embed, "head": head, "depth": depth, "width": width}


def _peft_per_block(size: dict[str, int]) -> dict[str, int]:
    """Trainable adapter numbers per block of the peft strategies at their defaults, on `qkv` (input w,
    output 3w) except (IA)^3, which also scales `fc2`'s input (4w), and VeRA and FourierFT, which adapt q
    and v (w x w each, split out of `qkv`)."""
    w = size["width"]
    assert w == 32, "the LoKr and OFT counts below are worked out for width 32"
    return {
        "dora": 8 * (w + 3 * w) + 3 * w,  # LoRA r=8 (A: 8 x w, B: 3w x 8) plus one magnitude per output
        "loha": 2 * 8 * (w + 3 * w),  # two rank-8 LoRA-shaped pairs
        # Kronecker factors from the divisor pairs nearest the square roots: 3w = 96 = 8 x 12 and
        # w = 32 = 4 x 8; W1 is 8 x 4; W2 (12 x 8) stays whole since r=8 is not below max(12, 8) / 2.
        "lokr": 8 * 4 + 12 * 8,
        "ia3": 3 * w + 4 * w,  # one scale per qkv output and per fc2 input
        "oft": (w // 32) * (32 * 31 // 2),  # blocks of 32 on the input, skew-symmetric: 32 * 31 / 2 each
        "vera": 2 * (256 + w),  # on q and v: d (one per rank, r=256) and b (one per output)
        # n_frequency 3000 exceeds a 32 x 32 layer's 1,024 weights: q and v each train their whole spectrum.
        "fourierft": 2 * w * w,
        "adalora": 12 * w + 3 * w * 12 + 12,  # init_r=12: P (12 x w), Q (3w x 12), singular values E (12)
        "boft": (w // 4) * 4 * 4 + 3 * w,  # 4 x 4 blocks on the input, one scale per output
    }


def _vision_petl(size: dict[str, int]) -> dict[str, int]:
    """The vision PETL strategies of issue 20 at their defaults, worked out from the tiny ViT's shape."""
    w, depth, head = size["width"], size["depth"], size["head"]
    assert w == 32, "fact_tk's rank 32 equals the width here; the counts below assume it"
    attn = w * 3 * w + 3 * w + w * w + w  # qkv and proj, weights and biases
    mlp = w * 4 * w + 4 * w + 4 * w * w + w  # fc1 and fc2
    biases = depth * 11 * w + 2 * w  # what bitfit trains
    convpass = (w * 8 + 8) + (8 * 8 * 9 + 8) + (8 * w + w)  # down, 3x3 conv, up; hidden 8
    repadapter = (w * 8 + 8) + (w * 4 + w)  # down; up in 2 groups of 4 inputs
    return {
        "attn_only": depth * attn + head,
        "mlp_only": depth * mlp + head,
        # Biases, LayerNorm weights (two a block and the final one), two gammas a block.
        "difffit": biases + (2 * depth + 1) * w + 2 * depth * w + head,
        "convpass": 2 * depth * convpass + head,
        "repadapter": 2 * depth * repadapter + head,
        # Shared u, v (w x 8 each); per block 4 cores 8 x 8, fc1 8 x 32, fc2 32 x 8.
        "fact_tt": 2 * w * 8 + depth * (4 * 64 + 2 * 8 * 32) + head,
        # Shared u, v (w x 32 each), core 32^3, factor 32 x 12 columns per block.
        "fact_tk": 2 * w * 32 + 32**3 + 32 * 12 * depth + head,
        # One query per block; the head reads (depth + 1) x w features.
        "vqt": depth * w + vision_petl_head(size, "vqt"),
    }


def vision_petl_head(size: dict[str, int], name: str) -> int:
    """The head's size: VQT's head reads the class feature and one query output per block."""
    if name == "vqt":
        return (size["depth"] + 1) * size["width"] * CLASSES + CLASSES
    return size["head"]


def expected_head(name: str) -> int:
    return vision_petl_head(architecture_counts(), name)


def _peft_more_adapters(size: dict[str, int]) -> dict[str, int]:
    """Trainable adapter numbers (all blocks, head excluded) of the further peft strategies at their defaults,
    all on `qkv` (input w = 32, output 3w = 96) except ln_tuning (the LayerNorms). Where a default does not
    fit the tiny widths the strategy fits it, as its module docstring says: MiSS's r=64 and C3A's and
    VB-LoRA's 256 become w = 32, SHiRA's r=32 becomes floor(3w^2 / 4w) = 24 (every weight)."""
    w, depth = size["width"], size["depth"]
    assert w == 32, "the fitted options below are worked out for width 32"
    per_block = {
        "lora_pissa": 8 * (w + 3 * w),  # LoRA r=8: A (8 x w) and B (3w x 8)
        "lora_olora": 8 * (w + 3 * w),
        "hra": w * 8,  # 8 Householder vectors of the input width
        "road": 3 * w,  # road_1: 3w / 2 angles and 3w / 2 scales
        "miss": w * 3 * w,  # one r x 3w shard, r capped at the input width w
        "shira": (3 * w * w // (4 * w)) * 4 * w,  # r (m + n) entries, r capped at 24: all 3w x w weights
        "c3a": (3 * w // w) * (w // w) * w,  # (out / b) x (in / b) kernels of b = w numbers
        "waveft": 2592,  # n_frequency coefficients
        "delora": 8 * (w + 3 * w) + 1,  # LoRA r=8 and one bound lambda
        "gralora": 32 * (w + 3 * w),  # LoRA's count at r=32 (k=2 sub-blocks)
        "glora": 2 * 8 * (3 * w + w) + 8 * (w + 1) + 2,  # A, B rank 8; C rank 8 of (w x 1); D, E scalars
        "randlora": 32 * 1 + 1 * w,  # n = ceil(w / 32) = 1 basis: Lambda (32 x 1), Gamma (1 x w)
        # Logits: 4 x (w / w) x 256 for A, (3w / w) x 4 x 256 for B; plus the shared bank, 256 vectors of w.
        "vblora": 4 * 1 * 256 + 3 * 4 * 256,
        "ln_tuning": 2 * size["norm"],  # norm1 and norm2 (weight and bias each)
    }
    extra = {"vblora": 256 * w, "ln_tuning": size["norm"]}  # the shared bank; the final LayerNorm
    return {name: depth * count + extra.get(name, 0) for name, count in per_block.items()}


def expected_trainable(name: str) -> int:
    size = architecture_counts()
    everything = size["embed"] + size["depth"] * size["block"] + size["norm"] + size["head"]
    expected = {
        "full": everything,
        "scratch": everything,
        "linear": size["head"],
        "last_k": 2 * size["block"] + size["norm"] + size["head"],  # default k=2
        "lora": size["depth"] * 8 * (size["width"] + 3 * size["width"]) + size["head"],  # r=8 on qkv
        "vpt_shallow": 10 * size["width"] + size["head"],  # 10 prompt tokens before block 1
        "vpt_deep": size["depth"] * 10 * size["width"] + size["head"],  # 10 prompt tokens per block
        # Biases per block: norm1 w, qkv 3w, proj w, norm2 w, fc1 4w, fc2 w = 11w; plus patch
        # embedding and final norm, w each.
        "bitfit": size["depth"] * 11 * size["width"] + 2 * size["width"] + size["head"],
        "norm": size["depth"] * 2 * size["norm"] + size["norm"] + size["head"],  # two LayerNorms a block
        # A scale and a shift per output channel of the same layers whose biases bitfit trains.
        "ssf": 2 * (size["depth"] * 11 * size["width"] + 2 * size["width"]) + size["head"],
        # Bottleneck 64: down w*64 + 64, up 64*w + w; one per block (adaptformer), two (adapter).
        "adaptformer": size["depth"] * (2 * 64 * size["width"] + 64 + size["width"]) + size["head"],
        "adapter": 2 * size["depth"] * (2 * 64 * size["width"] + 64 + size["width"]) + size["head"],
        # Bottleneck 8 after each MLP: down w*8 + 8, up 8*w + w.
        "pfeiffer_adapter": size["depth"] * (2 * 8 * size["width"] + 8 + size["width"]) + size["head"],
    }
    expected |= {name: size["depth"] * count + size["head"] for name, count in _peft_per_block(size).items()}
    expected |= _vision_petl(size)
    expected |= {name: count + size["head"] for name, count in _peft_more_adapters(size).items()}
    return expected[name]  # a new strategy adds its expected count here


def expected_effective(name: str) -> int:
    """Trainable numbers that reach the output at the end of training: the trainable count, except BOFT
    (6 of each 4 x 4 block's 16 numbers) and AdaLoRA (rank 8 of the stored 12)."""
    size = architecture_counts()
    w, depth, head = size["width"], size["depth"], size["head"]
    effective = {
        "boft": depth * ((w // 4) * 6 + 3 * w) + head,
        "adalora": depth * 8 * (w + 3 * w + 1) + head,  # P row, Q column and E of 8 ranks per qkv
        # The bank (256 x w) and the top 2 logits of each of the 4 x (1 + 3) sub-vectors per qkv.
        "vblora": 256 * w + depth * 2 * 4 * (1 + 3) + head,
    }
    return effective.get(name, expected_trainable(name))
