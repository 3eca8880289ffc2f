"""Weights load offline from a local file, equal to what was saved; mismatches fail loudly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from benchmark import backbone
from benchmark.errors import UsageError
from tests.conftest import TINY, TINY_MODEL, tiny_vit


def save_google_npz(model, path) -> None:
    """The original Google ViT .npz layout (the inverse of timm's converter)."""
    width, heads = model.embed_dim, model.blocks[0].attn.num_heads
    t = {
        "embedding/kernel": model.patch_embed.proj.weight.permute(2, 3, 1, 0),
        "embedding/bias": model.patch_embed.proj.bias,
        "cls": model.cls_token,
        "Transformer/posembed_input/pos_embedding": model.pos_embed,
        "Transformer/encoder_norm/scale": model.norm.weight,
        "Transformer/encoder_norm/bias": model.norm.bias,
        "head/kernel": model.head.weight.T,
        "head/bias": model.head.bias,
    }
    for index, block in enumerate(model.blocks):
        prefix = f"Transformer/encoderblock_{index}/"
        attention = prefix + "MultiHeadDotProductAttention_1/"
        for part, (weight, bias) in zip(
            ("query", "key", "value"),
            zip(block.attn.qkv.weight.chunk(3), block.attn.qkv.bias.chunk(3), strict=True),
            strict=True,
        ):
            t[f"{attention}{part}/kernel"] = weight.T.reshape(width, heads, -1)
            t[f"{attention}{part}/bias"] = bias.reshape(heads, -1)
        t[f"{attention}out/kernel"] = block.attn.proj.weight.reshape(width, heads, -1).permute(1, 2, 0)
        t[f"{attention}out/bias"] = block.attn.proj.bias
        for norm, name in ((block.norm1, "LayerNorm_0"), (block.norm2, "LayerNorm_2")):
            t[f"{prefix}{name}/scale"], t[f"{prefix}{name}/bias"] = norm.weight, norm.bias
        for layer, fc in enumerate((block.mlp.fc1, block.mlp.fc2)):
            t[f"{prefix}MlpBlock_3/Dense_{layer}/kernel"] = fc.weight.T
            t[f"{prefix}MlpBlock_3/Dense_{layer}/bias"] = fc.bias
    np.savez(path, **{key: value.detach().numpy() for key, value in t.items()})


def save(model, path) -> None:
    if path.suffix == ".safetensors":
        save_file(model.state_dict(), str(path))
    elif path.suffix == ".npz":
        save_google_npz(model, path)
    else:
        torch.save(model.state_dict(), path)


@pytest.mark.parametrize("suffix", [".safetensors", ".pth", ".bin", ".npz"])
def test_weights_round_trip_through_a_local_file(tmp_path, suffix):
    torch.manual_seed(1)
    saved = tiny_vit(num_classes=10)
    path = tmp_path / f"weights{suffix}"
    save(saved, path)
    loaded = backbone.create(TINY_MODEL, 10, str(path), img_size=16, model_args=TINY)
    expected = saved.state_dict()
    for key, value in loaded.model.state_dict().items():
        if key.startswith("head."):
            assert torch.count_nonzero(value) == 0, "the new head starts at zero"
        else:
            torch.testing.assert_close(value, expected[key], rtol=0, atol=0, msg=key)
    assert loaded.weights == f"file:{path}"


def test_new_resolution_and_classes_resample_position_embedding(tmp_path):
    path = tmp_path / "w.safetensors"
    save(tiny_vit(num_classes=10), path)
    loaded = backbone.create(TINY_MODEL, 100, str(path), img_size=32, model_args=TINY)
    assert loaded.model.pos_embed.shape == (1, (32 // 4) ** 2 + 1, 32)
    assert loaded.model.head.out_features == 100 and loaded.img_size == 32


@pytest.mark.parametrize("other", [{"depth": 3}, {"embed_dim": 64}])
def test_weights_of_another_architecture_are_rejected(tmp_path, other):
    path = tmp_path / "w.pth"
    save(tiny_vit(), path)
    with pytest.raises(UsageError, match="another architecture"):
        backbone.create(TINY_MODEL, 10, str(path), img_size=16, model_args=TINY | other)


def test_unreadable_and_missing_files_are_rejected(tmp_path):
    garbage = tmp_path / "w.safetensors"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(UsageError, match="not readable"):
        backbone.create(TINY_MODEL, 10, str(garbage), img_size=16, model_args=TINY)
    with pytest.raises(UsageError, match="does not exist"):
        backbone.create(TINY_MODEL, 10, str(tmp_path / "absent.pth"), img_size=16, model_args=TINY)


def test_random_initialisation_says_so():
    created = backbone.create(TINY_MODEL, 10, "none", img_size=16, model_args=TINY)
    assert created.weights == "none (random initialisation)"
    assert created.mean == (0.5, 0.5, 0.5), "Google's ViT statistics, not ImageNet's"
