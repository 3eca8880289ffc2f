"""Visual prompt tuning (vpt_shallow, vpt_deep): counts, placement of the prompts, pooling, removal."""

from __future__ import annotations

import copy
import math

import pytest
import torch

import strategies
from benchmark.config import make_options
from benchmark.errors import UsageError
from benchmark.train.measure import ParamCounts
from benchmark.train.prepare import apply_strategy
from benchmark.weights.backbone import create_skeleton
from strategies._prompts import remove_prompts
from tests.helpers import TINY, tiny_vit

NAMES = ("vpt_shallow", "vpt_deep")
IMAGES = 4
PATCHES = (16 // TINY["patch_size"]) ** 2  # 16 px images in patches of 4: 16 patch tokens


def _prepared(name: str, backbone: torch.nn.Module, **options) -> torch.nn.Module:
    strategy = strategies.get(name)
    return apply_strategy(strategy(strategy.Options(**options)), backbone)


def _block_inputs(model: torch.nn.Module, images: torch.Tensor) -> list[torch.Tensor]:
    """The token sequence entering each block, in order."""
    seen: list[torch.Tensor] = []
    hooks = [
        block.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach()))
        for block in model.blocks
    ]
    with torch.no_grad():
        model(images)
    for hook in hooks:
        hook.remove()
    return seen


@pytest.mark.parametrize(
    ("name", "prompted_layers"),
    [("vpt_shallow", 1), ("vpt_deep", 12)],  # ViT-B/16 has 12 blocks
)
def test_counts_on_vit_base(name, prompted_layers):
    model = _prepared(name, create_skeleton("vit_base_patch16_224", 100, None, {}))
    head = 768 * 100 + 100  # 76,900
    prompts = prompted_layers * 10 * 768  # 10 tokens of width 768 per prompted layer
    counts = ParamCounts.of(model)
    assert counts.head == head == 76_900
    assert counts.trainable == head + prompts == {"vpt_shallow": 84_580, "vpt_deep": 169_060}[name]
    assert counts.trainable_excluding_head == prompts


@pytest.mark.parametrize("name", NAMES)
def test_logits_shape_and_prompts_receive_gradient(name):
    torch.manual_seed(0)
    model = _prepared(name, tiny_vit(num_classes=7)).train()
    logits = model(torch.randn(IMAGES, 3, 16, 16))
    assert logits.shape == (IMAGES, 7)
    torch.nn.functional.cross_entropy(logits, torch.arange(IMAGES) % 7).backward()
    grad = model.blocks.prompts.grad
    assert grad is not None
    assert all(layer.abs().sum() > 0 for layer in grad), "a layer of prompts got no gradient"


@pytest.mark.parametrize("name", NAMES)
def test_without_prompts_the_model_is_the_backbone(name):
    torch.manual_seed(0)
    backbone = tiny_vit()
    reference = copy.deepcopy(backbone).eval()
    model = _prepared(name, backbone).eval()
    images = torch.randn(IMAGES, 3, 16, 16)
    with torch.no_grad():
        assert not torch.allclose(model(images), reference(images)), "prompts changed nothing"
        remove_prompts(model)
        assert torch.equal(model(images), reference(images))
    assert list(model.state_dict()) == list(reference.state_dict())


@pytest.mark.parametrize("name", NAMES)
def test_prompts_follow_the_class_and_register_tokens(name):
    torch.manual_seed(0)
    backbone = tiny_vit(reg_tokens=2)
    prefix = 1 + 2  # class token and two register tokens
    reference = copy.deepcopy(backbone).eval()
    model = _prepared(name, backbone, tokens=3).eval()
    images = torch.randn(IMAGES, 3, 16, 16)
    plain, prompted = _block_inputs(reference, images), _block_inputs(model, images)
    prompts = model.blocks.prompts.detach()
    assert prompted[0].shape == (IMAGES, prefix + 3 + PATCHES, TINY["embed_dim"])
    torch.testing.assert_close(prompted[0][:, :prefix], plain[0][:, :prefix], rtol=0, atol=0)
    torch.testing.assert_close(prompted[0][:, prefix + 3 :], plain[0][:, prefix:], rtol=0, atol=0)
    for layer, tokens in enumerate(prompted):
        own = prompts[min(layer, len(prompts) - 1)].expand(IMAGES, -1, -1)
        fresh = torch.equal(tokens[:, prefix : prefix + 3], own)
        # deep: every block starts from its own prompts; shallow: later blocks see block outputs
        assert fresh == (layer == 0 or name == "vpt_deep"), f"block {layer}"


def test_average_pooling_excludes_the_prompts():
    torch.manual_seed(0)
    model = _prepared("vpt_shallow", tiny_vit(global_pool="avg", reg_tokens=2), tokens=3).eval()
    prefix = 1 + 2
    last = []
    model.blocks[-1].register_forward_hook(lambda module, args, output: last.append(output))
    images = torch.randn(IMAGES, 3, 16, 16)
    with torch.no_grad():
        logits = model(images)
        tokens = model.norm(last[0])  # (images, prefix + 3 prompts + 16 patches, width)
        patches_only = model.fc_norm(tokens[:, prefix + 3 :].mean(dim=1))
        with_prompts = model.fc_norm(tokens[:, prefix:].mean(dim=1))
        torch.testing.assert_close(
            model.forward_head(model.forward_features(images), pre_logits=True), patches_only
        )
        torch.testing.assert_close(logits, model.head(patches_only))
    assert not torch.allclose(patches_only, with_prompts)


def test_prompts_start_uniform_within_the_vpt_bound():
    torch.manual_seed(0)
    prompts = _prepared("vpt_deep", tiny_vit()).blocks.prompts.detach()
    bound = math.sqrt(6 / (3 * 4 * 4 + 32))  # patch 4 x 4, width 32: VPT's Xavier-style bound, 0.274
    assert prompts.shape == (TINY["depth"], 10, TINY["embed_dim"])
    assert prompts.abs().max() <= bound
    assert prompts.abs().max() > 0.9 * bound  # 640 uniform draws: all below 0.9 has odds 0.9**640


def test_prompt_dropout_only_in_training():
    torch.manual_seed(0)
    model = _prepared("vpt_shallow", tiny_vit(), tokens=10, dropout=0.5).train()
    prompts = model.blocks.prompts.detach()[0]
    seen = _block_inputs(model, torch.randn(IMAGES, 3, 16, 16))[0][:, 1:11]
    kept = seen != 0
    assert 0 < kept.float().mean() < 1
    torch.testing.assert_close(seen[kept], (2 * prompts).expand_as(seen)[kept])  # kept ones scaled by 1/(1-p)
    model.eval()
    seen = _block_inputs(model, torch.randn(IMAGES, 3, 16, 16))[0][:, 1:11]
    assert torch.equal(seen, prompts.expand_as(seen))


@pytest.mark.parametrize("name", NAMES)
def test_needs_a_vision_transformer(name):
    with pytest.raises(ValueError, match=f"strategy '{name}' needs a timm VisionTransformer"):
        _prepared(name, create_skeleton("resnet50", 10, None, {}))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"tokens": 0}, r"vpt_deep.tokens must be at least 1; got 0"),
        ({"dropout": 1.0}, r"vpt_deep.dropout must be in \[0, 1\); got 1.0"),
        ({"dropout": -0.1}, r"vpt_deep.dropout must be in \[0, 1\); got -0.1"),
    ],
)
def test_options_are_validated(options, message):
    with pytest.raises(UsageError, match=message):
        make_options("vpt_deep", options)
