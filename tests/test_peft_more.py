"""The further peft strategies (issue 20, part 2): exact trainable counts on ViT-B/16 (meta skeleton, CIFAR-100
head) counted by hand; PiSSA's and OLoRA's residual base weights; VB-LoRA's random start; every adapter
learns; ResNets and bad options are one-line errors."""

from __future__ import annotations

import copy

import pytest
import timm
import torch

import strategies
from benchmark.config import make_options
from benchmark.errors import UsageError
from benchmark.train.measure import ParamCounts
from benchmark.train.prepare import apply_strategy
from benchmark.weights.backbone import create_skeleton
from tests.helpers import tiny_vit

# ViT-B/16: width 768, 12 blocks; qkv maps 768 -> 3 x 768 = 2304.
WIDTH, DEPTH, CLASSES = 768, 12, 100
QKV_IN, QKV_OUT = WIDTH, 3 * WIDTH
HEAD = WIDTH * CLASSES + CLASSES  # 76,900: weight and bias of the new head
LAYER_NORM = 2 * WIDTH  # weight and bias

PER_BLOCK = {
    # LoRA r=8 on qkv: A (8 x 768) + B (2304 x 8); the inits change no count.
    "lora_pissa": 8 * (QKV_IN + QKV_OUT),  # 24,576
    "lora_olora": 8 * (QKV_IN + QKV_OUT),
    "hra": QKV_IN * 8,  # 8 Householder vectors of the input width: 6,144
    "road": QKV_OUT // 2 * 2,  # road_1: an angle and a scale per pair of outputs: 2,304
    "miss": 64 * QKV_OUT,  # one r x out shard, r=64: 147,456
    "shira": 32 * (QKV_IN + QKV_OUT),  # r (m + n) sparse entries, r=32: 98,304
    "c3a": (QKV_OUT // 256)
    * (QKV_IN // 256)
    * 256,  # 9 x 3 circulant blocks, a 256-number kernel each: 6,912
    "waveft": 2592,  # n_frequency wavelet coefficients
    "delora": 8 * (QKV_IN + QKV_OUT) + 1,  # LoRA r=8 and the bound lambda: 24,577
    "gralora": 32 * (QKV_IN + QKV_OUT),  # LoRA's count at r=32, whatever k: 98,304
    # A and B of rank 8 (out x 8 + 8 x in each), C of rank 8 (in x 8 + 8 x 1), D and E one scalar each.
    "glora": 2 * 8 * (QKV_OUT + QKV_IN) + 8 * (QKV_IN + 1) + 2,  # 55,306
    # n = 768 / 32 = 24 random bases of rank 32: Lambda (32 x 24) and Gamma (24 x 768).
    "randlora": 32 * 24 + 24 * QKV_IN,  # 19,200
    # Logits, one per bank vector (256), for each 256-long sub-vector: A (4 x 768/256), B (2304/256 x 4).
    "vblora": 4 * (QKV_IN // 256) * 256 + (QKV_OUT // 256) * 4 * 256,  # 12,288
    "ln_tuning": 2 * LAYER_NORM,  # norm1 and norm2: 3,072
}
SHARED = {"vblora": 256 * 256, "ln_tuning": LAYER_NORM}  # VB-LoRA's bank; the final LayerNorm
# What reaches the output where it differs from what is stored (head excluded): VB-LoRA mixes the top 2 of
# each sub-vector's 256 logits, 2 x 4 x (3 + 9) per layer, and the whole bank.
EFFECTIVE = {"vblora": 256 * 256 + DEPTH * 2 * 4 * (3 + 9)}  # 66,688

NAMES = tuple(PER_BLOCK)


def adapters(name: str) -> int:
    return DEPTH * PER_BLOCK[name] + SHARED.get(name, 0)


def test_hand_counts_of_the_module_docstrings():
    """The totals that the strategies' docstrings state."""
    assert {name: adapters(name) for name in ("hra", "road", "c3a", "waveft", "vblora", "ln_tuning")} == {
        "hra": 73_728,
        "road": 27_648,
        "c3a": 82_944,
        "waveft": 31_104,
        "vblora": 212_992,
        "ln_tuning": 38_400,
    }


@pytest.mark.parametrize("name", NAMES)
def test_vit_b_trainable_and_effective_counts_on_the_meta_skeleton(name):
    strategy = strategies.get(name)()
    model = apply_strategy(strategy, create_skeleton("vit_base_patch16_224", CLASSES, None, {}))
    counts = ParamCounts.of(model)
    assert counts.trainable == adapters(name) + HEAD
    assert counts.head == HEAD
    assert strategy.effective_params(model) == EFFECTIVE.get(name, adapters(name)) + HEAD
    assert all(param.device.type == "meta" for param in model.parameters())


@pytest.mark.parametrize("name", NAMES)
def test_documented_and_reparameterised_or_selective(name):
    strategy = strategies.get(name)
    assert strategy.family == ("selective" if name == "ln_tuning" else "reparameterised")
    assert strategy.description and strategy.source
    assert strategy.defaults["optimizer"] == "adamw" and strategy.defaults["lr"] == 1e-3
    assert strategy.defaults["lr"] in strategy.search_space()["lr"]


@pytest.mark.parametrize(("name", "scaling"), [("lora_pissa", 2.0), ("lora_olora", 2.0)])
def test_pissa_and_olora_start_at_the_backbone_through_a_residual_weight(name, scaling):
    """The adapter starts non-zero (the weight's top directions) and the base weight holds the rest:
    W_residual + (alpha / r) B A = W, so the model computes the backbone's function."""
    torch.manual_seed(0)
    backbone = tiny_vit()
    torch.nn.init.normal_(backbone.get_classifier().weight)
    reference = copy.deepcopy(backbone).eval()
    model = apply_strategy(strategies.get(name)(), backbone).eval()
    qkv, original = model.blocks[0].attn.qkv, reference.blocks[0].attn.qkv.weight
    lora_a, lora_b = qkv.lora_A["default"].weight, qkv.lora_B["default"].weight
    assert lora_b.abs().sum() > 0 and not torch.equal(qkv.base_layer.weight, original)
    torch.testing.assert_close(qkv.base_layer.weight + scaling * lora_b @ lora_a, original, atol=1e-5, rtol=0)
    images = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(model(images), reference(images), rtol=1e-4, atol=1e-5)


def test_pissa_adapter_holds_the_weights_top_singular_values():
    torch.manual_seed(0)
    backbone = tiny_vit()
    weight = backbone.blocks[0].attn.qkv.weight.detach().clone()
    model = apply_strategy(strategies.get("lora_pissa")(), backbone)
    qkv = model.blocks[0].attn.qkv
    update = 2.0 * qkv.lora_B["default"].weight @ qkv.lora_A["default"].weight  # alpha / r = 16 / 8
    top8 = torch.linalg.svdvals(weight)[:8]
    torch.testing.assert_close(torch.linalg.svdvals(update)[:8], top8, atol=1e-4, rtol=1e-4)


def test_vblora_does_not_start_at_the_backbone_as_it_says():
    assert not strategies.get("vblora").starts_at_backbone
    torch.manual_seed(0)
    backbone = tiny_vit()
    torch.nn.init.normal_(backbone.get_classifier().weight)
    reference = copy.deepcopy(backbone).eval()
    model = apply_strategy(strategies.get("vblora")(), backbone).eval()
    images = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        assert not torch.allclose(model(images), reference(images), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_one_step_moves_every_blocks_adapter_and_the_loss(name):
    """With the head frozen, only the adapter can change the loss: a zero-initialised part must not stall."""
    torch.manual_seed(0)
    model = apply_strategy(strategies.get(name)(), tiny_vit())
    model.get_classifier().requires_grad_(False)
    trainable = {key: param for key, param in model.named_parameters() if param.requires_grad}
    before = {key: param.detach().clone() for key, param in trainable.items()}
    optimizer = torch.optim.AdamW(trainable.values(), lr=1e-2, weight_decay=0.0)
    images, labels = torch.randn(8, 3, 16, 16), torch.arange(8) % 10
    loss = torch.nn.functional.cross_entropy(model(images), labels)
    loss.backward()
    optimizer.step()
    with torch.no_grad():
        assert torch.nn.functional.cross_entropy(model(images), labels).item() != loss.item()
    moved = {key for key, param in trainable.items() if not torch.equal(param, before[key])}
    for block in range(2):
        assert any(key.startswith(f"blocks.{block}.") for key in moved), (
            f"block {block}'s adapter did not move"
        )


def _resnet18() -> torch.nn.Module:
    with torch.device("meta"):
        return timm.create_model("resnet18", num_classes=CLASSES)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("lora_pissa", "strategy 'lora_pissa' initialises linear layers only; conv1 is a Conv2d"),
        ("lora_olora", "strategy 'lora_olora' initialises linear layers only"),
        ("ln_tuning", "strategy 'ln_tuning' needs a model with LayerNorm layers"),
        ("hra", r"hra.targets \['qkv'\] match no module of the model"),
        ("vblora", r"vblora.targets \['qkv'\] match no module of the model"),
    ],
)
def test_a_resnet_is_refused_in_one_line(name, message):
    with pytest.raises(ValueError, match=message) as error:
        apply_strategy(strategies.get(name)(), _resnet18())
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("hra", {"r": 3}, "hra.r must be even"),
        ("road", {"variant": "road_3"}, "road.variant must be one of road_1, road_2, road_4; got 'road_3'"),
        ("road", {"group_size": 5}, "road.group_size must be an even number"),
        ("gralora", {"k": 3}, "gralora.k must divide r 32; got 3"),
        ("glora", {"form_d_e": "lora"}, "glora.form_d_e must be one of vector, constant, none"),
        ("vblora", {"topk": 300}, "vblora.topk must be at most num_vectors 256"),
        ("delora", {"bound": 0}, "delora.bound must be positive"),
        ("miss", {"dropout": 1.0}, r"miss.dropout must be in \[0, 1\)"),
        ("c3a", {"block_size": 0}, "c3a.block_size must be at least 1"),
        ("randlora", {"targets": ()}, "randlora.targets must be a tuple"),
        ("shira", {"r": 0}, "shira.r must be at least 1"),
        ("lora_pissa", {"r": 0}, "lora_pissa.r must be at least 1"),
    ],
)
def test_bad_options_name_the_option(name, options, message):
    with pytest.raises(UsageError, match=message):
        make_options(name, options)


def test_waveft_refuses_more_coefficients_than_weights():
    options = strategies.get("waveft").Options(n_frequency=4000)  # the tiny qkv has 96 x 32 = 3,072 weights
    with pytest.raises(
        ValueError, match="waveft.n_frequency must be at most the adapted layers' weights 3072"
    ):
        apply_strategy(strategies.get("waveft")(options), tiny_vit())
