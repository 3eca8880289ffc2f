"""bitfit, norm, ssf, adaptformer and adapter: exact counts on ViT-B/16 and ResNets, errors, forward path."""

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

# ViT-B/16, 100 classes: width 768, depth 12, MLP 3072; the head is 768 * 100 + 100 = 76,900.
WIDTH, DEPTH, MLP, HEAD = 768, 12, 3072, 768 * 100 + 100
# Trainable counts given in the issue (each tensor once, head included).
FROM_THE_ISSUE = {"bitfit": 179_812, "norm": 115_300, "adaptformer": 1_266_532, "ssf": 282_724}


def vit_b16_by_hand() -> dict[str, int]:
    """The same counts from ViT-B/16's shape, plus the adapter's, which the issue does not give."""
    # Output channels of every biased layer: per block norm1, qkv, proj, norm2, fc1, fc2; then the
    # patch embedding and the final norm.
    channels = DEPTH * (WIDTH + 3 * WIDTH + WIDTH + WIDTH + MLP + WIDTH) + WIDTH + WIDTH  # 102,912
    bottleneck = (WIDTH * 64 + 64) + (64 * WIDTH + WIDTH)  # down 768->64, up 64->768, with biases: 99,136
    return {
        "bitfit": channels + HEAD,  # one bias per output channel
        "norm": DEPTH * 2 * (2 * WIDTH) + 2 * WIDTH + HEAD,  # 25 LayerNorms, weight and bias each
        "ssf": 2 * channels + HEAD,  # a scale and a shift per output channel
        "adaptformer": DEPTH * bottleneck + HEAD,  # one beside each MLP
        "adapter": 2 * DEPTH * bottleneck + HEAD,  # 2 * 12 * 99,136 + 76,900 = 2,456,164
        # One bottleneck of 8 after each MLP: 768 * 8 + 8 + 8 * 768 + 768 = 13,064 a block.
        "pfeiffer_adapter": DEPTH * ((WIDTH * 8 + 8) + (8 * WIDTH + WIDTH)) + HEAD,  # 233,668
    }


def vit_b16(name: str) -> ParamCounts:
    model = create_skeleton("vit_base_patch16_224", 100, None, {})  # meta device: no memory
    return ParamCounts.of(apply_strategy(strategies.get(name)(), model))


@pytest.mark.parametrize("name", sorted(FROM_THE_ISSUE))
def test_vit_b16_counts_match_the_issue(name):
    assert vit_b16(name).trainable == FROM_THE_ISSUE[name] == vit_b16_by_hand()[name]


def test_vit_b16_adapter_count_matches_the_formula():
    counts = vit_b16("adapter")
    assert counts.trainable == vit_b16_by_hand()["adapter"] == 2_456_164
    assert counts.head == HEAD
    # Adapters are added, nothing is replaced: ViT-B/16 has 86,567,656 with 1,000 classes, so
    # 86,567,656 - 900 * 769 = 85,875,556 with 100.
    assert counts.total == 85_875_556 + 2 * DEPTH * 99_136


def test_vit_b16_pfeiffer_adapter_is_the_vtab_tables_adapter_row():
    """The VTAB-1k tables (VPT, NOAH) give 0.16M for "Adapter" on ViT-B/16, the head left out."""
    counts = vit_b16("pfeiffer_adapter")
    assert counts.trainable == vit_b16_by_hand()["pfeiffer_adapter"] == 233_668
    assert counts.trainable_excluding_head == 156_768 and round(156_768 / 1e6, 2) == 0.16
    assert vit_b16("adapter").trainable_excluding_head == 2_379_264  # Houlsby's, two per block: 2.38M


def resnet_norm_channels(widths: tuple[int, ...], blocks: tuple[int, ...], expansion: int) -> int:
    """BatchNorm channels of a timm ResNet: stem 64; per block one BN per conv (2 basic, 3 bottleneck),
    the last one at the expanded width; and a downsample BN in a stage's first block when it changes
    the resolution (every stage but the first) or the channel count."""
    convs = 2 if expansion == 1 else 3
    total, channels = 64, 64
    for stage, (width, count) in enumerate(zip(widths, blocks, strict=True)):
        total += count * (width * (convs - 1) + width * expansion)
        if stage > 0 or channels != width * expansion:
            total += width * expansion
        channels = width * expansion
    return total


RESNETS = {
    # name: (BatchNorm channels, features into the fc)
    "resnet18": (resnet_norm_channels((64, 128, 256, 512), (2, 2, 2, 2), 1), 512),  # 4,800
    "resnet50": (resnet_norm_channels((64, 128, 256, 512), (3, 4, 6, 3), 4), 2048),  # 26,560
}


def meta_resnet(name: str) -> torch.nn.Module:
    with torch.device("meta"):
        return timm.create_model(name, num_classes=10)


@pytest.mark.parametrize("arch", sorted(RESNETS))
def test_bitfit_and_norm_apply_to_resnets(arch):
    bn_channels, features = RESNETS[arch]
    head = features * 10 + 10
    # ResNet convolutions have no bias: bitfit trains the BatchNorm biases and the head.
    assert (
        ParamCounts.of(apply_strategy(strategies.get("bitfit")(), meta_resnet(arch))).trainable
        == bn_channels + head
    )
    assert (
        ParamCounts.of(apply_strategy(strategies.get("norm")(), meta_resnet(arch))).trainable
        == 2 * bn_channels + head
    )


def test_resnet18_counts_by_hand():
    assert RESNETS["resnet18"][0] == 64 + 2 * 2 * 64 + (2 * 2 * 128 + 128) + (2 * 2 * 256 + 256) + (
        2 * 2 * 512 + 512
    )


@pytest.mark.parametrize("name", strategies.names())
def test_every_strategy_adapts_a_resnet_or_refuses_it_in_one_line(name):
    """Registry-wide, so a new strategy needs no entry here: it applies to a ResNet (a conv net: peft's
    conv layers, the probe, full, ...) or says in one line why not (it needs a ViT, its targets match no
    layer, it initialises linear layers only)."""
    try:
        model = apply_strategy(strategies.get(name)(), meta_resnet("resnet18"))
    except ValueError as error:  # one line that names the strategy (or its option) and the reason
        assert str(error).startswith((f"strategy '{name}' ", f"{name}.")), str(error)
        assert "\n" not in str(error)
    else:
        assert ParamCounts.of(model).trainable > 0


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("adaptformer", {"dim": 0}, "adaptformer.dim"),
        ("adaptformer", {"scale": 0.0}, "adaptformer.scale must be a positive number"),
        ("adaptformer", {"scale": float("nan")}, "adaptformer.scale"),
        ("adapter", {"dim": -8}, "adapter.dim"),
    ],
)
def test_invalid_options_name_the_option(name, options, message):
    with pytest.raises(UsageError, match=message):
        make_options(name, options)


def test_ssf_scales_and_shifts_the_patch_embedding_channels():
    """SSF's parameters sit in the forward path: on the conv output they act per channel (dim 1)."""
    torch.manual_seed(0)
    backbone = tiny_vit()
    conv = copy.deepcopy(backbone.patch_embed.proj)
    model = apply_strategy(strategies.get("ssf")(), backbone)
    wrapped = model.patch_embed.proj
    channels = conv.out_channels
    with torch.no_grad():
        wrapped.ssf_scale.copy_(torch.arange(channels, dtype=torch.float32))
        wrapped.ssf_shift.fill_(0.5)
        images = torch.randn(2, 3, 16, 16)
        expected = conv(images) * torch.arange(channels).view(1, -1, 1, 1) + 0.5
        torch.testing.assert_close(wrapped(images), expected)
    trained = {name for name, param in model.named_parameters() if param.requires_grad}
    assert "blocks.0.attn.qkv.ssf_scale" in trained and "norm.ssf_shift" in trained
    assert not any(name.startswith("head.ssf") for name in trained), "the head is not scaled"


def test_adaptformer_adds_the_scaled_adapter_beside_the_mlp():
    torch.manual_seed(0)
    backbone = tiny_vit()
    mlp = copy.deepcopy(backbone.blocks[0].mlp)
    model = apply_strategy(
        strategies.get("adaptformer")(strategies.get("adaptformer").Options(scale=0.25)), backbone
    )
    block_mlp = model.blocks[0].mlp
    tokens = torch.randn(2, 5, 32)
    with torch.no_grad():
        block_mlp.adapter.up.bias.fill_(1.0)  # up weight is still zero: the adapter outputs exactly 1
        torch.testing.assert_close(block_mlp(tokens), mlp(tokens) + 0.25)


def test_adapter_adds_a_residual_bottleneck_after_attention_and_mlp():
    torch.manual_seed(0)
    backbone = tiny_vit()
    attn = copy.deepcopy(backbone.blocks[1].attn)
    model = apply_strategy(strategies.get("adapter")(), backbone)
    wrapped = model.blocks[1].attn
    tokens = torch.randn(2, 5, 32)
    with torch.no_grad():
        wrapped.adapter.up.bias.fill_(1.0)
        torch.testing.assert_close(wrapped(tokens), attn(tokens) + 1.0)
    assert isinstance(model.blocks[1].mlp.adapter.activation, torch.nn.GELU)


def test_pfeiffer_adapter_adds_one_residual_bottleneck_after_the_mlp_only():
    torch.manual_seed(0)
    backbone = tiny_vit()
    mlp, attn = copy.deepcopy(backbone.blocks[0].mlp), backbone.blocks[0].attn
    model = apply_strategy(strategies.get("pfeiffer_adapter")(), backbone)
    assert model.blocks[0].attn is attn, "attention is left as it is"
    wrapped = model.blocks[0].mlp
    assert wrapped.adapter.down.out_features == 8 and isinstance(wrapped.adapter.activation, torch.nn.GELU)
    tokens = torch.randn(2, 5, 32)
    with torch.no_grad():
        wrapped.adapter.up.bias.fill_(1.0)
        torch.testing.assert_close(wrapped(tokens), mlp(tokens) + 1.0)
