"""linear, full, scratch and lora work on any timm classifier, not only ViTs (here ResNets)."""

from __future__ import annotations

import copy
from pathlib import Path

import pandas as pd
import pytest
import timm
import torch

import strategies
from benchmark import cli
from benchmark.train.measure import ParamCounts
from benchmark.train.prepare import apply_strategy

CLASSES = 10
# ResNet-18 (He et al. 2016, Table 1): stem 7x7 conv 3->64, then four stages of two basic blocks
# (two 3x3 convs each) at widths 64, 128, 256, 512; stages 2-4 open with a 1x1 projection.
WIDTHS = (64, 128, 256, 512)
# ResNet-50 has 25,557,032 parameters with its 1000-class head (torchvision's model card);
# its head is 2048 -> 1000.
RESNET50_TOTAL_1000, RESNET50_FEATURES = 25_557_032, 2048


def resnet18() -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model("resnet18", num_classes=CLASSES)


def resnet18_convs() -> list[tuple[int, int, int]]:
    """(in channels, out channels, kernel side) of every convolution of ResNet-18, by hand."""
    convs = [(3, WIDTHS[0], 7)]
    previous = WIDTHS[0]
    for width in WIDTHS:
        convs += [(previous, width, 3), (width, width, 3), (width, width, 3), (width, width, 3)]
        if width != previous:
            convs.append((previous, width, 1))  # the projection shortcut
        previous = width
    return convs


def test_linear_split_computes_the_logits_and_trains_only_the_fc():
    strategy = strategies.get("linear")()
    model = apply_strategy(strategy, resnet18()).eval()
    split = strategy.split(model)
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(split.rest(split.trunk(images)), model(images))
        assert split.trunk(images).shape == (2, WIDTHS[-1])  # pooled features, the fc's input
    assert ParamCounts.of(model).trainable == WIDTHS[-1] * CLASSES + CLASSES
    assert not any(param.requires_grad for param in split.trunk.parameters())
    frozen = sum(param.numel() for param in split.trunk.parameters())
    assert frozen + WIDTHS[-1] * CLASSES + CLASSES == sum(param.numel() for param in model.parameters())


def test_linear_trunk_is_frozen_in_eval_mode_while_the_head_trains():
    """The cached trunk must be deterministic: its BatchNorms use running statistics."""
    strategy = strategies.get("linear")()
    model = apply_strategy(strategy, resnet18())
    split = strategy.split(model)
    split.trunk.eval()
    split.rest.train()
    assert not model.bn1.training and not model.layer4[1].bn2.training and not model.training
    assert model.fc.training


@pytest.mark.parametrize(("name", "expected"), [("full", True), ("scratch", True), ("linear", False)])
def test_resnet50_counts(name, expected):
    with torch.device("meta"):
        model = timm.create_model("resnet50", num_classes=CLASSES)
    counts = ParamCounts.of(apply_strategy(strategies.get(name)(), model))
    head = RESNET50_FEATURES * CLASSES + CLASSES
    total = RESNET50_TOTAL_1000 - (RESNET50_FEATURES * 1000 + 1000) + head
    assert counts.total == total
    assert counts.head == head
    assert counts.trainable == (total if expected else head)


def test_lora_on_a_resnet_adapts_every_convolution_and_starts_at_the_backbone():
    backbone = resnet18()
    torch.nn.init.normal_(backbone.get_classifier().weight)
    reference = copy.deepcopy(backbone).eval()
    model = apply_strategy(strategies.get("lora")(), backbone).eval()
    rank = strategies.get("lora").Options().r
    # peft's Conv2d LoRA: A is a conv in -> r with the layer's kernel, B a 1x1 conv r -> out, no biases.
    adapters = sum(rank * (c_in * k * k + c_out) for c_in, c_out, k in resnet18_convs())
    assert ParamCounts.of(model).trainable == adapters + WIDTHS[-1] * CLASSES + CLASSES
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(images), reference(images))


def test_lora_targets_that_match_nothing_are_one_line_errors():
    options = strategies.get("lora").Options(targets=("q_proj",))
    with pytest.raises(ValueError, match=r"lora.targets \['q_proj'\] match no module"):
        apply_strategy(strategies.get("lora")(options), resnet18())


def test_run_on_a_resnet_caches_the_linear_probes_trunk(tmp_path: Path):
    """16 px rather than 32 and 256 training images: a ResNet-18 epoch is 20x cheaper, and the point is that
    it runs."""
    argv = [
        "run", "--strategies", "linear,full,scratch", "--dataset", "digits", "--model", "resnet18",
        "--no-pretrained", "--img-size", "16", "--epochs", "1", "--train-size", "256", "--device", "cpu",
        "--results-dir", str(tmp_path / "results"),
    ]  # fmt: skip
    assert cli.main(argv) == 0
    rows = pd.read_parquet(tmp_path / "results" / "runs").set_index("strategy")
    assert set(rows.index) == {"linear", "full", "scratch"}
    assert (rows["status"] == "ok").all()
    assert rows.loc["linear", "trunk_cached"]
    assert rows.loc["linear", "trainable_params"] == WIDTHS[-1] * CLASSES + CLASSES
    assert rows.loc["full", "trainable_params"] == rows.loc["full", "total_params"]
