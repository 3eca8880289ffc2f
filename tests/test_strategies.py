"""Every registered strategy gets the same checks: prepare, one training step, counts, frozen parts."""

from __future__ import annotations

import copy

import pytest
import torch

import strategies
from benchmark.measure import ParamCounts
from tests.helpers import TINY, tiny_vit

CLASSES = 10


def _architecture_counts() -> dict[str, int]:
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
    """Trainable adapter numbers per block of the peft strategies at their defaults, all on `qkv`
    (input w, output 3w) except (IA)^3, which also scales `fc2`'s input (4w)."""
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
        "vera": 256 + 3 * w,  # d (one per rank, r=256) and b (one per output)
        "fourierft": 3000,  # n_frequency spectral coefficients
        "adalora": 12 * w + 3 * w * 12 + 12,  # init_r=12: P (12 x w), Q (3w x 12), singular values E (12)
        "boft": (w // 4) * 4 * 4 + 3 * w,  # 4 x 4 blocks on the input, one scale per output
    }


def expected_trainable(name: str) -> int:
    size = _architecture_counts()
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
    }
    expected |= {name: size["depth"] * count + size["head"] for name, count in _peft_per_block(size).items()}
    return expected[name]  # a new strategy adds its expected count here


@pytest.mark.parametrize("name", strategies.names())
def test_trainable_counts_match_the_architecture(name):
    model = strategies.get(name)().prepare(tiny_vit())
    counts = ParamCounts.of(model)
    assert counts.trainable == expected_trainable(name)
    assert counts.head == _architecture_counts()["head"]
    assert counts.trainable_excluding_head == counts.trainable - counts.head


@pytest.mark.parametrize("name", strategies.names())
def test_one_step_trains_only_the_trainable_parts(name):
    torch.manual_seed(0)
    strategy = strategies.get(name)()
    model = strategy.prepare(tiny_vit())
    before = {key: value.detach().clone() for key, value in model.named_parameters()}
    split = strategy.split(model)
    images, labels = torch.randn(8, 3, 16, 16), torch.arange(8) % CLASSES
    trainable = [param for param in model.parameters() if param.requires_grad]
    optimizer = torch.optim.SGD(trainable, lr=0.1)
    if split:
        with torch.no_grad():
            features = split.trunk(images)
        logits = split.rest(features)
    else:
        logits = model(images)
    torch.nn.functional.cross_entropy(logits, labels).backward()
    optimizer.step()
    for key, param in model.named_parameters():
        if param.requires_grad:
            continue
        assert param.grad is None, f"frozen {key} received a gradient"
        assert torch.equal(param, before[key]), f"frozen {key} changed"
    changed = [
        key
        for key, param in model.named_parameters()
        if param.requires_grad and not torch.equal(param, before[key])
    ]
    assert any(key.startswith("head") for key in changed), "the head did not train"


@pytest.mark.parametrize(
    "name",
    [
        name
        for name in strategies.names()
        if strategies.get(name)().split(strategies.get(name)().prepare(tiny_vit()))
    ],
)
def test_split_computes_the_same_logits_as_the_model(name):
    torch.manual_seed(0)
    strategy = strategies.get(name)()
    model = strategy.prepare(tiny_vit()).eval()
    split = strategy.split(model)
    images = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(split.rest(split.trunk(images)), model(images))
    assert all(not param.requires_grad for param in split.trunk.parameters())
    assert {id(param) for param in model.parameters() if param.requires_grad} <= {
        id(param) for param in split.rest.parameters()
    }


def test_registry_rejects_duplicates_and_suggests_names():
    with pytest.raises(ValueError, match="registered twice"):
        strategies.register(strategies.get("lora"))
    with pytest.raises(ValueError, match="Did you mean 'lora'"):
        strategies.get("lorra")


def test_last_k_rejects_k_beyond_depth():
    with pytest.raises(ValueError, match="between 1 and the model's depth 2"):
        strategies.get("last_k")(strategies.get("last_k").Options(k=3)).prepare(tiny_vit())


@pytest.mark.parametrize(
    "name",
    [
        name
        for name in strategies.names()
        if strategies.get(name).starts_at_backbone and strategies.get(name).uses_pretrained
    ],
)
def test_prepared_model_starts_at_the_backbone(name):
    """Before the first step an adapted model computes the backbone's function (same, non-zero head)."""
    torch.manual_seed(0)
    backbone = tiny_vit()
    torch.nn.init.normal_(backbone.get_classifier().weight)  # a zero head would hide any difference
    reference = copy.deepcopy(backbone).eval()
    model = strategies.get(name)().prepare(backbone).eval()
    images = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(model(images), reference(images), rtol=1e-4, atol=1e-5)
