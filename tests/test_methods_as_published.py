"""Methods as their references run them (issue 19, part 7): q and v split out of timm's fused qkv for FourierFT
and VeRA, FourierFT's spectrum at its own learning rate, and weight decay that leaves every vector alone."""

from __future__ import annotations

import copy

import pytest
import torch

import strategies
from benchmark.config import TrainParams
from benchmark.train.prepare import apply_strategy
from benchmark.train.step import make_optimizer, make_scheduler
from benchmark.weights.backbone import create_skeleton
from strategies._qkv import SplitQKV, split_qkv
from tests.helpers import tiny_vit

CPU = torch.device("cpu")
WIDTH = 32  # the tiny ViT's


def test_split_qkv_computes_the_fused_layer_with_its_own_numbers():
    torch.manual_seed(0)
    model = tiny_vit()
    torch.nn.init.normal_(model.get_classifier().weight)  # a zero head would hide any difference
    reference = copy.deepcopy(model).eval()
    assert split_qkv(model, ("q", "v")) == 2  # one per block
    model.eval()
    for block, fused in zip(model.blocks, reference.blocks, strict=True):
        split = block.attn.qkv
        assert isinstance(split, SplitQKV)
        weights, biases = fused.attn.qkv.weight, fused.attn.qkv.bias
        for index, part in enumerate((split.q, split.k, split.v)):  # timm's row order: q, k, v
            rows = slice(index * WIDTH, (index + 1) * WIDTH)
            assert torch.equal(part.weight, weights[rows]) and torch.equal(part.bias, biases[rows])
    images = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(model(images), reference(images), rtol=0, atol=1e-6)
    assert sum(param.numel() for param in model.parameters()) == sum(
        param.numel() for param in reference.parameters()
    )


def test_split_qkv_leaves_models_alone_unless_q_k_or_v_is_targeted():
    model = tiny_vit()
    assert split_qkv(model, ("qkv", "fc1")) == 0
    assert isinstance(model.blocks[0].attn.qkv, torch.nn.Linear)


@pytest.mark.parametrize("name", ["fourierft", "vera"])
def test_fourierft_and_vera_adapt_q_and_v_not_k(name):
    model = apply_strategy(strategies.get(name)(), tiny_vit())
    adapted = {
        key.split(".")[4] for key, param in model.named_parameters() if param.requires_grad and ".qkv." in key
    }
    assert adapted == {"q", "v"}


def test_fourierft_takes_n_frequency_per_layer_up_to_the_layers_weights():
    options = strategies.get("fourierft").Options(n_frequency=100)
    model = apply_strategy(strategies.get("fourierft")(options), tiny_vit())
    spectra = [param for key, param in model.named_parameters() if "fourierft_spectrum" in key]
    assert [param.numel() for param in spectra] == [100] * 4  # q and v of 2 blocks
    model = apply_strategy(strategies.get("fourierft")(), tiny_vit())  # 3000 > 32 x 32: the whole spectrum
    assert {param.numel() for key, param in model.named_parameters() if "fourierft_spectrum" in key} == {1024}


def _optimizer(
    name: str, model: torch.nn.Module | None = None, **options
) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    strategy = strategies.get(name)(strategies.get(name).Options(**options))
    model = apply_strategy(strategy, model if model is not None else tiny_vit())
    train = TrainParams(**{key: strategy.defaults[key] for key in ("optimizer", "lr", "weight_decay")})
    return model, make_optimizer(model, train, CPU, strategy)


def _group_of(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, dict]:
    where = {id(param): group for group in optimizer.param_groups for param in group["params"]}
    return {key: where[id(param)] for key, param in model.named_parameters() if param.requires_grad}


def _lrs(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> tuple[set[float], set[float]]:
    groups = _group_of(model, optimizer)
    spectrum = {group["lr"] for key, group in groups.items() if "fourierft_spectrum" in key}
    return spectrum, {group["lr"] for key, group in groups.items() if key.startswith("head.")}


def test_fourierft_on_vit_b16_trains_its_spectrum_at_0_2_and_its_head_at_7e_4():
    model, optimizer = _optimizer("fourierft", create_skeleton("vit_base_patch16_224", 100, None, {}))
    (spectrum,), (head,) = _lrs(model, optimizer)
    assert spectrum == pytest.approx(0.2) and head == 7e-4


def test_fourierft_spectrum_ratio_follows_the_layer_size_and_holds_through_the_schedule():
    """On 32 x 32 layers the reference's step per weight needs 768^2 / 32^2 = 576x less than its 285.7."""
    model, optimizer = _optimizer("fourierft")
    schedule = make_scheduler(optimizer, warmup_steps=2, total_steps=10)
    for _ in range(5):
        (spectrum,), (head,) = _lrs(model, optimizer)
        assert spectrum / head == pytest.approx(0.2 / 7e-4 / 576)
        optimizer.step()
        schedule.step()
    model, optimizer = _optimizer("fourierft", spectrum_lr_ratio=3.0)  # as given
    (spectrum,), (head,) = _lrs(model, optimizer)
    assert spectrum / head == pytest.approx(3.0)


# The vectors each method adds (scales, shifts, magnitudes, singular values, spectra), by peft's or this
# project's parameter names, and one matrix each method also trains where it has one.
VECTORS = {
    "ssf": ("ssf_scale", "ssf_shift"),
    "dora": ("lora_magnitude_vector",),
    "vera": ("vera_lambda_b", "vera_lambda_d"),
    "fourierft": ("fourierft_spectrum",),
    "ia3": ("ia3_l",),
    "boft": ("boft_s",),
    "adalora": ("lora_E",),
}
MATRICES = {"dora": "lora_A", "boft": "boft_R", "adalora": "lora_A"}


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_every_scale_and_vector_is_exempt_from_weight_decay_and_matrices_are_not(name):
    model, optimizer = _optimizer(name)
    groups = _group_of(model, optimizer)
    for marker in VECTORS[name]:
        found = {key: group["weight_decay"] for key, group in groups.items() if f".{marker}" in key}
        assert found and set(found.values()) == {0.0}, f"{name}: {marker} decayed: {found}"
    assert groups["head.weight"]["weight_decay"] == 1e-4 and groups["head.bias"]["weight_decay"] == 0.0
    if name in MATRICES:
        assert {group["weight_decay"] for key, group in groups.items() if MATRICES[name] in key} == {1e-4}


def test_groups_are_timms_for_a_strategy_without_hooks():
    """Strategies that name no vector and set no lr ratio get the groups timm made before the hooks."""
    from timm.optim import create_optimizer_v2

    model, optimizer = _optimizer("lora")
    before = create_optimizer_v2(model, opt="adamw", lr=1e-3, weight_decay=1e-4)
    assert [[id(p) for p in group["params"]] for group in optimizer.param_groups] == [
        [id(p) for p in group["params"]] for group in before.param_groups
    ]
    assert [group["weight_decay"] for group in optimizer.param_groups] == [0.0, 1e-4]


def test_c3a_trains_its_kernels_at_peft_s_1e_1_without_weight_decay_and_its_head_at_the_run_s_lr():
    """peft's C3A page: lr 1e-1 for C3A (100x the others' 1e-3) and a much smaller weight decay."""
    model, optimizer = _optimizer("c3a")
    groups = _group_of(model, optimizer)
    kernels = [group for key, group in groups.items() if ".c3a_kernel." in key]
    (head,) = {group["lr"] for key, group in groups.items() if key == "head.weight"}
    assert kernels and all(group["lr"] == pytest.approx(100 * head) for group in kernels)
    assert {group["weight_decay"] for group in kernels} == {0.0}
