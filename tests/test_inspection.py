"""A look inside a ViT: rollout, position similarity, filter components, figures, and image prediction."""

from __future__ import annotations

import math

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from sklearn.decomposition import PCA

from benchmark.data.images import center_square, read_images
from benchmark.kept.inspection import (
    attention_rollout,
    patch_filter_components,
    position_similarity,
    sample_for_display,
    top_k,
    write_inspection,
)
from tests.helpers import TINY, TINY_IMG, tiny_vit

GRID = TINY_IMG // TINY["patch_size"]  # 16 px / 4 px patches: a 4 x 4 grid, 16 patch positions
MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


@pytest.fixture
def vit():
    torch.manual_seed(0)
    return tiny_vit()


def images(count: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(count, 3, TINY_IMG, TINY_IMG, generator=torch.Generator().manual_seed(seed))


# --- attention rollout -------------------------------------------------------------------------------


def test_rollout_is_a_distribution_over_the_patch_grid_and_leaves_the_model_as_it_was(vit):
    batch = images(3)
    vit.eval()
    with torch.no_grad():
        before = vit(batch)
    vit.train()
    fused = [block.attn.fused_attn for block in vit.blocks]

    maps = attention_rollout(vit, batch)

    assert maps.shape == (3, GRID, GRID)
    assert (maps >= 0).all()
    torch.testing.assert_close(maps.sum(dim=(1, 2)), torch.ones(3))
    torch.testing.assert_close(attention_rollout(vit, batch, batch_size=2), maps)  # batches: same maps
    assert vit.training and [block.attn.fused_attn for block in vit.blocks] == fused
    assert all(not block.attn.attn_drop._forward_hooks for block in vit.blocks)
    vit.eval()
    with torch.no_grad():
        torch.testing.assert_close(vit(batch), before)


def test_rollout_equals_the_papers_formula_on_attention_computed_by_hand(vit):
    """Abnar & Zuidema 2020: A = 0.5 W_att + 0.5 I per layer (W_att averaged over heads), rollout the
    product from the first layer up; here W_att is recomputed from each block's input and weights."""
    batch = images(2, seed=1)
    block_inputs = []
    hooks = [b.register_forward_pre_hook(lambda _m, a: block_inputs.append(a[0])) for b in vit.blocks]
    vit.eval()
    with torch.no_grad():
        vit(batch)
    for hook in hooks:
        hook.remove()
    heads, dim = TINY["num_heads"], TINY["embed_dim"]
    tokens = 1 + GRID * GRID
    expected = np.zeros((2, GRID * GRID))
    for image in range(2):
        rollout = np.eye(tokens)
        for block, x in zip(vit.blocks, block_inputs, strict=True):
            with torch.no_grad():
                qkv = block.attn.qkv(block.norm1(x[image])).reshape(tokens, 3, heads, dim // heads)
            q, k = qkv[:, 0].transpose(0, 1).double(), qkv[:, 1].transpose(0, 1).double()
            weights = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(dim // heads), dim=-1).mean(0).numpy()
            rollout = (0.5 * weights + 0.5 * np.eye(tokens)) @ rollout
        expected[image] = rollout[0, 1:] / rollout[0, 1:].sum()

    maps = attention_rollout(vit, batch)

    np.testing.assert_allclose(maps.reshape(2, -1).numpy(), expected, atol=1e-6)


def test_uniform_attention_gives_a_uniform_map():
    """Zero query/key weights make every score 0, so each block attends uniformly: the map is 1/16."""
    model = tiny_vit()
    with torch.no_grad():
        for block in model.blocks:
            block.attn.qkv.weight[: 2 * TINY["embed_dim"]] = 0  # query and key rows
            block.attn.qkv.bias[: 2 * TINY["embed_dim"]] = 0

    maps = attention_rollout(model, images(2))

    torch.testing.assert_close(maps, torch.full((2, GRID, GRID), 1 / GRID**2))


def test_rollout_excludes_register_tokens_and_needs_a_class_token():
    assert attention_rollout(tiny_vit(reg_tokens=2), images(1)).shape == (1, GRID, GRID)
    with pytest.raises(ValueError, match="class token"):
        attention_rollout(tiny_vit(class_token=False, global_pool="avg"), images(1))


# --- embeddings --------------------------------------------------------------------------------------


def test_position_similarity_is_cosine_over_patch_positions(vit):
    with torch.no_grad():
        vit.pos_embed[0, 0] = 5.0  # the class token's position: not a patch position
        vit.pos_embed[0, 1] = 0.0
        vit.pos_embed[0, 1, 0] = 2.0  # position (0, 0) along axis 0
        vit.pos_embed[0, 2] = 0.0
        vit.pos_embed[0, 2, :2] = 3.0  # position (0, 1) at 45 degrees to it: cosine 1/sqrt(2)

    similarity = position_similarity(vit)

    assert similarity.shape == (GRID * GRID, GRID * GRID)
    assert similarity[0, 1] == pytest.approx(1 / math.sqrt(2), abs=1e-6)
    torch.testing.assert_close(similarity.diagonal(), torch.ones(GRID * GRID), atol=1e-6, rtol=0)
    torch.testing.assert_close(similarity, similarity.T)


def test_filter_components_are_the_principal_directions_scaled_for_display(vit):
    patch = TINY["patch_size"]
    components = patch_filter_components(vit)
    assert components.shape == (28, 3, patch, patch)
    flat = components.flatten(start_dim=1)
    torch.testing.assert_close(flat.min(dim=1).values, torch.zeros(28))
    torch.testing.assert_close(flat.max(dim=1).values, torch.ones(28))

    filters = vit.patch_embed.proj.weight.detach().reshape(TINY["embed_dim"], -1).numpy()
    top = PCA(n_components=1).fit(filters).components_[0]
    scaled = [(v - v.min()) / (v.max() - v.min()) for v in (top, -top)]
    assert min(np.abs(flat[0].numpy() - s).max() for s in scaled) < 1e-5

    # 32 centred filters span at most 31 directions (fewer than 3 * 4 * 4 = 48 values per filter).
    assert len(patch_filter_components(vit, k=100)) == TINY["embed_dim"] - 1


# --- predictions -------------------------------------------------------------------------------------


def test_top_k_gives_softmax_probabilities_most_probable_first():
    logits = torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]]).log()
    result = top_k(logits, ["cat", "dog", "frog"], k=2)
    assert [name for name, _ in result[0]] == ["cat", "dog"]
    assert [p for _, p in result[0]] == pytest.approx([0.5, 0.3])
    assert result[1][0] == ("frog", pytest.approx(0.8))
    assert len(top_k(logits, ["cat", "dog", "frog"], k=5)[0]) == 3  # capped by the classes
    with pytest.raises(ValueError, match="class_names"):
        top_k(logits, ["cat", "dog"])


def test_samples_show_confident_mistakes_first_and_some_right_ones():
    probabilities = torch.tensor(
        [[0.9, 0.1], [0.3, 0.7], [0.4, 0.6], [0.2, 0.8], [0.95, 0.05], [0.55, 0.45], [0.1, 0.9], [0.6, 0.4]]
    )
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 1, 0])
    # Right: 0, 6, 7. Wrong, by confidence: 4 (0.95), 3 (0.8), 1 (0.7), 2 (0.6), 5 (0.55).
    assert sample_for_display(probabilities, labels, 4) == [4, 3, 0, 6]  # half the slots mistakes
    assert sample_for_display(probabilities, labels, 3) == [4, 0, 6]
    assert sample_for_display(probabilities, labels, 7) == [4, 3, 1, 2, 0, 6, 7]  # too few right ones
    assert sample_for_display(probabilities, labels, 20) == [4, 3, 1, 2, 5, 0, 6, 7]


# --- figures -----------------------------------------------------------------------------------------


def test_a_vit_gets_all_four_figures(vit, tmp_path):
    batch, labels = images(10), torch.arange(10) % 3
    paths, notes = write_inspection(vit, batch, labels, None, ["a", "b", "c"], MEAN, STD, tmp_path, "x__")

    names = ["attention_rollout", "position_similarity", "patch_filters", "sample_predictions"]
    assert [path.name for path in paths] == [f"x__{name}.png" for name in names]
    assert notes == []
    for path in paths:
        with Image.open(path) as image:
            assert min(image.size) > 300  # readable, not a thumbnail


def test_a_resnet_gets_only_sample_predictions_and_notes_why(tmp_path):
    model = timm.create_model("resnet18", num_classes=3)
    probabilities = torch.tensor([[0.2, 0.5, 0.3]] * 4)
    paths, notes = write_inspection(
        model, images(4), torch.tensor([1, 0, 2, 1]), probabilities, ["a", "b", "c"], MEAN, STD, tmp_path
    )
    assert [path.name for path in paths] == ["sample_predictions.png"]
    assert len(notes) == 3
    for note, figure in zip(
        notes, ["attention_rollout", "position_similarity", "patch_filters"], strict=True
    ):
        assert note.startswith(f"{figure}.png not drawn") and "VisionTransformer" in note and "ResNet" in note


# --- image files -------------------------------------------------------------------------------------


def test_read_images_converts_to_rgb_and_names_each_unreadable_file(tmp_path):
    colour = np.array([200, 100, 50], dtype=np.uint8)
    Image.fromarray(np.tile(colour, (6, 9, 1))).save(tmp_path / "rgb.png")
    Image.fromarray(np.tile(colour, (8, 8, 1))).save(tmp_path / "photo.jpg", quality=95)
    Image.fromarray(np.full((5, 4), 77, dtype=np.uint8)).save(tmp_path / "grey.png")
    Image.fromarray(np.tile(np.array([10, 20, 30, 128], dtype=np.uint8), (3, 3, 1))).save(
        tmp_path / "rgba.png"
    )
    (tmp_path / "notes.png").write_text("not an image")
    paths = [
        tmp_path / name
        for name in ("rgb.png", "notes.png", "photo.jpg", "missing.png", "grey.png", "rgba.png")
    ]

    read, errors = read_images(paths)

    assert [path.name for path, _ in read] == ["rgb.png", "photo.jpg", "grey.png", "rgba.png"]
    rgb, jpeg, grey, rgba = (image for _, image in read)
    assert rgb.dtype == torch.uint8 and rgb.shape == (3, 6, 9)
    assert rgb[:, 0, 0].tolist() == [200, 100, 50]
    assert jpeg.shape == (3, 8, 8) and (jpeg[:, 0, 0].int() - torch.tensor([200, 100, 50])).abs().max() <= 4
    assert grey.shape == (3, 5, 4) and (grey == 77).all()
    assert rgba.shape == (3, 3, 3) and rgba[:, 1, 1].tolist() == [10, 20, 30]  # alpha dropped
    assert len(errors) == 2
    assert str(tmp_path / "notes.png") in errors[0] and "not a readable" in errors[0]
    assert str(tmp_path / "missing.png") in errors[1] and "no such file" in errors[1]


def test_center_square_keeps_the_middle():
    image = torch.arange(2 * 4 * 6).reshape(2, 4, 6)
    assert torch.equal(center_square(image), image[:, :, 1:5])
