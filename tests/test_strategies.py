"""Every registered strategy gets the same checks: prepare, one training step, counts, frozen parts."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

import strategies
from benchmark.train.measure import ParamCounts
from benchmark.train.prepare import apply_strategy
from tests.counts import CLASSES, expected_head, expected_trainable
from tests.helpers import tiny_vit


@pytest.mark.parametrize("name", strategies.names())
def test_trainable_counts_match_the_architecture(name):
    model = apply_strategy(strategies.get(name)(), tiny_vit())
    counts = ParamCounts.of(model)
    assert counts.trainable == expected_trainable(name)
    assert counts.head == expected_head(name)
    assert counts.trainable_excluding_head == counts.trainable - counts.head


@pytest.mark.parametrize("name", strategies.names())
def test_one_step_trains_only_the_trainable_parts(name):
    torch.manual_seed(0)
    strategy = strategies.get(name)()
    model = apply_strategy(strategy, tiny_vit())
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
        if strategies.get(name)().split(apply_strategy(strategies.get(name)(), tiny_vit()))
    ],
)
def test_split_computes_the_same_logits_as_the_model(name):
    torch.manual_seed(0)
    strategy = strategies.get(name)()
    model = apply_strategy(strategy, tiny_vit()).eval()
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
        apply_strategy(strategies.get("last_k")(strategies.get("last_k").Options(k=3)), tiny_vit())


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
    model = apply_strategy(strategies.get(name)(), backbone).eval()
    images = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(model(images), reference(images), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", strategies.names())
def test_every_option_says_what_it_means(name):
    """`list` shows each option's help text: every option of every strategy must have one."""
    for field in dataclasses.fields(strategies.get(name).Options):
        assert field.metadata.get("help", "").strip(), f"{name}.{field.name} has no help text"


@pytest.mark.parametrize("family", [None, "additve"])
def test_a_strategy_must_declare_one_of_the_families(family):
    class Undeclared(strategies.Strategy):
        name = "undeclared"
        description = "a strategy that forgets or misspells its family"

    if family is not None:
        Undeclared.family = family
    with pytest.raises(ValueError, match="strategy 'undeclared' must declare its family, one of baseline"):
        strategies.register(Undeclared)
    assert "undeclared" not in strategies.names()
