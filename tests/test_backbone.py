"""Weights load offline from a local file, equal to what was saved; mismatches fail loudly."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from benchmark.errors import UsageError
from benchmark.weights import backbone
from tests.helpers import TINY, TINY_MODEL, tiny_vit


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


FORMATS = [".safetensors", ".pth", ".bin", ".npz"]


@pytest.mark.parametrize("suffix", FORMATS)
def test_a_deeper_checkpoint_is_refused_not_truncated(tmp_path, suffix):
    path = tmp_path / f"w{suffix}"
    save(tiny_vit(depth=4), path)  # blocks 2 and 3 have no place in the depth-2 model
    with pytest.raises(UsageError, match=r"no tensor 'blocks\.2\."):
        backbone.create(TINY_MODEL, 10, str(path), img_size=16, model_args=TINY)


@pytest.mark.parametrize("suffix", FORMATS)
def test_another_patch_size_is_refused_not_resampled(tmp_path, suffix):
    path = tmp_path / f"w{suffix}"
    save(tiny_vit(patch_size=8), path)  # kernel 8x8 against the model's 4x4
    with pytest.raises(UsageError, match=r"'patch_embed\.proj\.weight' is \(32, 3, 8, 8\) in the file"):
        backbone.create(TINY_MODEL, 10, str(path), img_size=16, model_args=TINY)


def test_a_new_image_size_resamples_identically_in_every_format(tmp_path):
    torch.manual_seed(2)
    saved = tiny_vit()
    with torch.no_grad():  # row r of the 4x4 grid holds the value r in every channel
        rows = torch.arange(4.0).repeat_interleave(4)[None, :, None].expand(1, 16, 32)
        saved.pos_embed[:, 1:] = rows
    resampled = {}
    for suffix in FORMATS:
        save(saved, tmp_path / f"w{suffix}")
        loaded = backbone.create(TINY_MODEL, 10, str(tmp_path / f"w{suffix}"), img_size=32, model_args=TINY)
        assert loaded.pos_embed == "resampled 4x4 -> 8x8 (bicubic)"
        resampled[suffix] = loaded.model.pos_embed.detach()
    for suffix in FORMATS[1:]:
        torch.testing.assert_close(resampled[suffix], resampled[FORMATS[0]], rtol=0, atol=0, msg=suffix)
    grid = resampled[".npz"][0, 1:, 0].reshape(8, 8)
    torch.testing.assert_close(resampled[".npz"][:, :1], saved.pos_embed[:, :1].detach(), rtol=0, atol=0)
    # Bicubic from rows 0..3 to 8 rows: columns are constant; the row mean stays 1.5 (symmetric kernel).
    torch.testing.assert_close(grid, grid[:, :1].expand(8, 8), rtol=0, atol=1e-6)
    assert abs(grid[:, 0].mean().item() - 1.5) < 1e-5
    assert grid[0, 0] < grid[7, 0], "row order is kept"


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
    assert created.normalisation == f"timm default for {TINY_MODEL}"
    assert torch.count_nonzero(created.model.head.weight) == 0, "the new head starts at zero here too"
    assert torch.count_nonzero(created.model.head.bias) == 0


def test_a_fitting_file_at_its_own_size_is_loaded_as_saved(tmp_path):
    path = tmp_path / "w.safetensors"
    save(tiny_vit(), path)
    loaded = backbone.create(TINY_MODEL, 10, str(path), img_size=16, model_args=TINY)
    assert loaded.pos_embed == "as saved"
    assert loaded.normalisation == f"timm default for {TINY_MODEL}", "no config beside the file"


def test_a_timm_config_beside_the_file_gives_mean_and_std(tmp_path):
    save(tiny_vit(), tmp_path / "model.safetensors")
    stats = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    (tmp_path / "config.json").write_text(json.dumps({"architecture": TINY_MODEL, "pretrained_cfg": stats}))
    loaded = backbone.create(TINY_MODEL, 10, str(tmp_path), img_size=16, model_args=TINY)
    assert (loaded.mean, loaded.std) == (tuple(stats["mean"]), tuple(stats["std"]))
    assert loaded.normalisation == "file: config.json pretrained_cfg"


def test_weights_fingerprint(tmp_path):
    path = tmp_path / "w.pth"
    save(tiny_vit(), path)
    assert backbone.weights_fingerprint(str(path)) == hashlib.sha256(path.read_bytes()).hexdigest()
    assert backbone.weights_fingerprint("hub") == backbone.weights_fingerprint("none") == ""
    assert backbone.weights_fingerprint("hf:google/vit-base-patch16-224-in21k@main") == (
        "hf:google/vit-base-patch16-224-in21k@main"
    )
    for bad in (str(tmp_path / "absent.pth"), str(tmp_path), "hf:no-owner"):
        with pytest.raises(UsageError):
            backbone.weights_fingerprint(bad)


def from_hub_config(path):
    """'hub' weights, with timm's pretrained config pointed at a local file instead of the network."""
    overlay = {"pretrained_cfg_overlay": {"file": str(path), "custom_load": False}}
    return backbone.create(TINY_MODEL, 10, "hub", img_size=32, model_args=TINY | overlay)


def test_hub_weights_are_checked_and_resampled_like_a_file(tmp_path):
    path = tmp_path / "w.safetensors"
    save(tiny_vit(), path)
    from_hub = from_hub_config(path)
    from_file = backbone.create(TINY_MODEL, 10, str(path), img_size=32, model_args=TINY)
    assert from_hub.pos_embed == "resampled 4x4 -> 8x8 (bicubic)"
    for key, value in from_file.model.state_dict().items():
        torch.testing.assert_close(from_hub.model.state_dict()[key], value, rtol=0, atol=0, msg=key)
    deeper = tmp_path / "deep.safetensors"
    save(tiny_vit(depth=4), deeper)
    with pytest.raises(UsageError, match=r"no tensor 'blocks\.2\."):
        from_hub_config(deeper)
