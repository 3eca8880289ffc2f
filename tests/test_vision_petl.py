"""The vision PETL strategies of issue 20: exact trainable counts on ViT-B/16 with 100 classes (meta
skeleton), counted by hand from the architecture; RepAdapter's merged evaluation; ResNet refusals; options."""

from __future__ import annotations

import copy

import pytest
import torch

import strategies
from benchmark.config import make_options
from benchmark.errors import UsageError
from benchmark.train.measure import ParamCounts
from benchmark.train.prepare import apply_strategy
from benchmark.weights.backbone import create_skeleton
from tests.helpers import tiny_vit

# ViT-B/16: width 768, 12 blocks, MLP 4 x 768 = 3072 wide; a new 100-class head.
W, DEPTH, CLASSES = 768, 12, 100
HEAD = W * CLASSES + CLASSES  # 76,900

WITHOUT_HEAD = {
    # qkv (768 -> 2304) and proj (768 -> 768), weights and biases, in each block.
    "attn_only": DEPTH * (W * 3 * W + 3 * W + W * W + W),  # 28,348,416
    # fc1 (768 -> 3072) and fc2 (3072 -> 768), weights and biases.
    "mlp_only": DEPTH * (W * 4 * W + 4 * W + 4 * W * W + W),  # 56,669,184
    # Biases (norm1, qkv x3, proj, norm2, fc1 x4, fc2: 11 x 768 a block; patch embedding and final norm),
    # the 25 LayerNorm weights and two per-channel gammas a block.
    "difffit": (DEPTH * 11 * W + 2 * W) + 25 * W + DEPTH * 2 * W,  # 140,544
    # Two bypasses a block: down 768 x 8 + 8, 3x3 conv 8 x 8 x 9 + 8, up 8 x 768 + 768.
    "convpass": DEPTH * 2 * ((W * 8 + 8) + (8 * 8 * 9 + 8) + (8 * W + W)),  # 327,552
    # Two adapters a block: down 768 x 8 + 8; up in 2 groups, 768 outputs of 4 inputs each, + 768 biases.
    "repadapter": DEPTH * 2 * ((W * 8 + 8) + (W * 4 + W)),  # 239,808
    # Rank 8: shared u, v (768 x 8 each); per block q, k, v, proj cores 8 x 8, fc1 8 x 32, fc2 32 x 8.
    "fact_tt": 2 * W * 8 + DEPTH * (4 * 8 * 8 + 8 * 32 + 32 * 8),  # 21,504
    # Rank 32: shared u, v (768 x 32 each), core 32^3, factor 32 x (12 columns x 12 blocks).
    "fact_tk": 2 * W * 32 + 32**3 + 32 * 12 * DEPTH,  # 86,528
    # One query token per block.
    "vqt": DEPTH * W,  # 9,216
}
# VQT's head reads the class feature and 12 query outputs: 13 x 768 features.
HEADS = {"vqt": 13 * W * CLASSES + CLASSES}  # 998,500


def test_hand_counts_match_the_published_sizes():
    """The papers' parameter columns (millions, head excluded): Convpass 0.33M, RepAdapter 0.24M (ours with
    biases), V-PETL Bench's DiffFit 0.14M, FacT-TT at rank 8 0.02M."""
    assert round(WITHOUT_HEAD["convpass"] / 1e6, 2) == 0.33
    assert round(WITHOUT_HEAD["difffit"] / 1e6, 2) == 0.14
    assert round(WITHOUT_HEAD["fact_tt"] / 1e6, 2) == 0.02


@pytest.mark.parametrize("name", list(WITHOUT_HEAD))
def test_vit_b_trainable_counts_on_the_meta_skeleton(name):
    model = apply_strategy(strategies.get(name)(), create_skeleton("vit_base_patch16_224", CLASSES, None, {}))
    counts = ParamCounts.of(model)
    assert counts.head == HEADS.get(name, HEAD)
    assert counts.trainable == WITHOUT_HEAD[name] + HEADS.get(name, HEAD)


def _trained_adapters(model: torch.nn.Module) -> torch.nn.Module:
    """RepAdapter with non-zero adapters, as after training (they start as the identity)."""
    torch.manual_seed(1)
    for module in model.modules():
        if hasattr(module, "up_weight"):
            torch.nn.init.normal_(module.up_weight, std=0.1)
            torch.nn.init.normal_(module.up_bias, std=0.1)
    return model


def test_repadapter_merged_evaluation_equals_its_unmerged_forward():
    model = _trained_adapters(apply_strategy(strategies.get("repadapter")(), tiny_vit())).eval()
    images = torch.randn(4, 3, 16, 16)
    unmerged = model(images)  # eval mode with autograd: the adapter runs on its own
    with torch.no_grad():
        merged = model(images)
    assert not torch.allclose(unmerged, tiny_vit().eval()(images))  # the adapters do change the function
    torch.testing.assert_close(merged, unmerged.detach(), rtol=1e-4, atol=1e-5)


def test_repadapter_merged_evaluation_follows_the_trained_and_the_loaded_weights():
    strategy = strategies.get("repadapter")()
    model = _trained_adapters(apply_strategy(strategy, tiny_vit()))
    images, labels = torch.randn(4, 3, 16, 16), torch.arange(4)
    saved = copy.deepcopy(model.state_dict())
    model.eval()
    with torch.no_grad():
        before = model(images)  # merges and keeps the merged weights
    model.train()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    torch.nn.functional.cross_entropy(model(images), labels).backward()
    optimizer.step()
    model.eval()
    with torch.no_grad():
        after = model(images)
    torch.testing.assert_close(after, model(images).detach(), rtol=1e-4, atol=1e-5)
    assert not torch.allclose(after, before)
    model.load_state_dict(saved)
    with torch.no_grad():
        torch.testing.assert_close(model(images), before)


def test_vqt_leaves_the_backbone_features_and_trains_its_queries():
    torch.manual_seed(0)
    backbone = tiny_vit().eval()
    model = apply_strategy(strategies.get("vqt")(), copy.deepcopy(backbone))
    images, labels = torch.randn(4, 3, 16, 16), torch.arange(4)
    with torch.no_grad():
        torch.testing.assert_close(model.eval().forward_features(images), backbone.forward_features(images))
    queries = model.blocks.queries.detach().clone()
    torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5).zero_grad()
    loss = torch.nn.functional.cross_entropy(model.train()(images), labels)
    loss.backward()
    assert model.blocks.queries.grad.abs().sum() > 0
    assert torch.equal(model.blocks.queries, queries)


@pytest.mark.parametrize(
    ("name", "option", "value"),
    [
        ("convpass", "scale", 0.0),
        ("convpass", "dim", 0),
        ("repadapter", "groups", 3),
        ("fact_tt", "rank", 0),
        ("fact_tk", "scale", float("nan")),
        ("vqt", "queries", 0),
        ("vqt", "dropout", 1.0),
        ("vqt", "normalize", "yes"),
    ],
)
def test_bad_options_are_one_line_errors_naming_the_option(name, option, value):
    with pytest.raises(UsageError, match=f"{name}.{option}( .*)? must") as error:
        make_options(name, {option: value})
    assert "\n" not in str(error.value)
