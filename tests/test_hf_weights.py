"""transformers ViT checkpoints load into the matching timm ViT and compute what transformers computes."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

from benchmark.errors import UsageError
from benchmark.weights import backbone
from tests.helpers import ROOT, TINY, TINY_MODEL, tiny_vit

transformers = pytest.importorskip("transformers")

# The tiny timm ViT of conftest (patch 4, width 32, depth 2, 2 heads, MLP 4x32, 16 px) in transformers'
# terms. layer_norm_eps and hidden_act are transformers' defaults (1e-12, exact "gelu"): the loader sets
# the timm model's LayerNorm eps to the checkpoint's, and timm's nn.GELU() is the exact GELU.
TINY_HF = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 128,
    "image_size": 16,
    "patch_size": 4,
    "num_labels": 10,
}


def saved_hf(folder, model_class: str, **config):
    torch.manual_seed(3)
    model_config = transformers.ViTConfig(**(TINY_HF | config))
    kwargs = {"add_pooling_layer": True} if model_class == "ViTModel" else {}
    model = getattr(transformers, model_class)(model_config, **kwargs).eval()
    model.save_pretrained(folder)
    return model


def load(weights, img_size: int = 16, **model_args):
    return backbone.create(TINY_MODEL, 10, str(weights), img_size=img_size, model_args=TINY | model_args)


def test_a_classifier_checkpoint_computes_the_same_features_and_logits(tmp_path):
    hf = saved_hf(tmp_path, "ViTForImageClassification")
    loaded = load(tmp_path)
    model = loaded.model.eval()
    assert torch.count_nonzero(model.head.weight) == 0, "the checkpoint's classifier is not kept"
    assert model.norm.eps == 1e-12, "the checkpoint's LayerNorm eps"
    images = torch.randn(2, 3, 16, 16)  # already normalised, as both models expect
    with torch.no_grad():
        features = model.forward_head(model.forward_features(images), pre_logits=True)
        expected = hf.vit(images).last_hidden_state[:, 0]
        torch.testing.assert_close(features, expected, rtol=0, atol=1e-4)
        model.head.load_state_dict(hf.classifier.state_dict())  # the same classifier on both sides
        torch.testing.assert_close(model(images), hf(images).logits, rtol=0, atol=1e-4)
    assert loaded.pos_embed == "as saved"


def test_a_model_with_pooler_loads_without_it(tmp_path):
    hf = saved_hf(tmp_path, "ViTModel")
    assert hf.pooler is not None
    model = load(tmp_path / "model.safetensors").model.eval()  # the weights file itself, config beside it
    images = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(
            model.forward_features(images), hf(images).last_hidden_state, rtol=0, atol=1e-4
        )
    assert not any("pooler" in key for key in model.state_dict())


def test_mean_and_std_come_from_the_preprocessor_config(tmp_path):
    saved_hf(tmp_path, "ViTModel")
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    transformers.ViTImageProcessor(image_mean=mean, image_std=std).save_pretrained(tmp_path)
    loaded = load(tmp_path)
    assert (loaded.mean, loaded.std) == (tuple(mean), tuple(std))
    assert loaded.normalisation == "file: preprocessor_config.json"


@pytest.mark.parametrize(
    "config, message",
    [
        ({"num_attention_heads": 4}, "num_attention_heads 4 (the model has 2)"),  # same tensor shapes
        ({"hidden_act": "gelu_new"}, "hidden_act gelu_new (the model has GELU)"),  # tanh approximation
        (
            {"num_hidden_layers": 3, "patch_size": 8},
            "patch_size 8 (the model has 4), num_hidden_layers 3 (the model has 2)",
        ),
    ],
)
def test_a_config_that_does_not_fit_is_one_line(tmp_path, config, message):
    saved_hf(tmp_path, "ViTModel", **config)
    with pytest.raises(UsageError) as error:
        load(tmp_path)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_a_bare_weights_file_of_another_patch_size_names_the_tensor(tmp_path):
    saved_hf(tmp_path, "ViTModel", patch_size=8)
    (tmp_path / "config.json").unlink()  # no config to check: the tensors themselves must refuse
    with pytest.raises(UsageError, match=r"'patch_embed\.proj\.weight' is \(32, 3, 8, 8\) in the file"):
        load(tmp_path / "model.safetensors")


def test_a_new_image_size_resamples_as_for_a_timm_file(tmp_path):
    saved_hf(tmp_path / "hf", "ViTModel")
    timm_file = tmp_path / "timm.safetensors"
    save_file(load(tmp_path / "hf").model.state_dict(), str(timm_file))
    from_hf, from_timm = load(tmp_path / "hf", img_size=32), load(timm_file, img_size=32)
    assert from_hf.pos_embed == from_timm.pos_embed == "resampled 4x4 -> 8x8 (bicubic)"
    torch.testing.assert_close(from_hf.model.pos_embed, from_timm.model.pos_embed, rtol=0, atol=0)


def test_hub_checkpoints_fail_in_one_line_offline(tmp_path):
    # huggingface_hub reads HF_HUB_OFFLINE when imported, hence a fresh process (without timm, for speed).
    code = (
        "from benchmark.weights import hf_weights\n"
        "from benchmark.errors import UsageError\n"
        "try:\n"
        "    hf_weights.download('hf:google/vit-base-patch16-224-in21k')\n"
        "except UsageError as error:\n"
        "    print(error); raise SystemExit(2)\n"
    )
    environment = os.environ | {
        "PYTHONPATH": str(ROOT),
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(tmp_path),  # an empty cache
    }
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=environment, timeout=120
    )
    assert result.returncode == 2, result.stderr
    assert result.stdout.count("\n") == 1 and "HF_HUB_OFFLINE" in result.stdout


def test_the_converted_layout_equals_timm_names_one_to_one(tmp_path):
    saved_hf(tmp_path, "ViTForImageClassification")
    loaded = load(tmp_path).model.state_dict()
    reference = tiny_vit().state_dict()
    assert loaded.keys() == reference.keys()
    assert all(loaded[key].shape == reference[key].shape for key in reference)
