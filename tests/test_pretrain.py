"""`pretrain` and the backbone it made that ships with the project (weights/)."""

from __future__ import annotations

import json

import torch
from safetensors.torch import load_file

from benchmark import cli
from benchmark.data import glyphs
from benchmark.train.pretrain import Recipe
from benchmark.weights import backbone
from tests.helpers import ROOT

SHIPPED = ROOT / "weights" / "glyph_vit_p8_d2_w64.safetensors"
ARCHITECTURE = dict(Recipe().model_args)
# A shortened recipe: the shipped one's code path, 30 steps instead of 3,000 (about 3 s on one thread).
SHORT = ["--steps", "30", "--warmup-steps", "5", "--eval-every", "15", "--val-images", "200"]


def test_glyph_classes_leave_the_digits_out():
    assert not set("0123456789") & set(glyphs.CLASSES)
    assert len(set(glyphs.CLASSES)) == len(glyphs.CLASSES)
    bank = glyphs.templates()
    assert set(bank.labels.tolist()) == set(range(len(glyphs.CLASSES)))  # every class has a template


def test_pretrain_is_deterministic_and_loads_with_weights(tmp_path):
    first, second = tmp_path / "a" / "vit.safetensors", tmp_path / "b" / "vit.safetensors"
    for out in (first, second):
        assert cli.main(["pretrain", *SHORT, "--out", str(out)]) == 0
    a, b = load_file(str(first)), load_file(str(second))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[key], b[key]) for key in a)  # bit for bit, not approximately
    record = json.loads(first.with_suffix(".json").read_text())
    assert [point["step"] for point in record["curve"]] == [15, 30]
    assert record["bytes"] == first.stat().st_size and record["sha256"] == backbone.file_sha256(first)
    # --weights FILE goes through backbone.create: every backbone tensor must fit, the head is new.
    loaded = backbone.create(Recipe.model, 10, str(first), Recipe.img_size, ARCHITECTURE)
    state = loaded.model.state_dict()
    assert all(torch.equal(state[key], a[key]) for key in a if not key.startswith("head."))
    assert loaded.weights == f"file:{first}"
    assert not loaded.model.head.weight.any()


def test_shipped_backbone_is_what_its_record_says():
    record = json.loads(SHIPPED.with_suffix(".json").read_text())
    assert record["sha256"] == backbone.file_sha256(SHIPPED)
    assert record["bytes"] == SHIPPED.stat().st_size < 1_000_000
    assert record["recipe"]["model_args"] == ARCHITECTURE
    assert record["curve"][-1]["step"] == record["recipe"]["steps"]
    loaded = backbone.create(Recipe.model, 10, str(SHIPPED), Recipe.img_size, ARCHITECTURE)
    assert loaded.model.pos_embed.shape == (1, 1 + (Recipe.img_size // 8) ** 2, 64)
