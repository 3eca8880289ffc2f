"""The fast paths change speed, not results: cached trunk outputs, device-side augmentation, batching."""

from __future__ import annotations

import pytest
import torch

import strategies
from benchmark.config import RunConfig, TrainParams
from benchmark.data import datasets
from benchmark.data.batches import Pipeline, epoch_order, random_crop_flip, to_model_input
from benchmark.train.inputs import Inputs
from benchmark.train.prepare import apply_strategy
from benchmark.train.step import order_generator
from tests.helpers import TINY, TINY_MODEL, tiny_vit

CPU = torch.device("cpu")


@pytest.mark.parametrize("name", ["linear", "last_k"])
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_cached_and_uncached_trunk_give_the_same_logits(name, precision):
    torch.manual_seed(0)
    splits = datasets.load("synthetic", "unused", 0.1)
    strategy = strategies.get(name)()
    model = apply_strategy(strategy, tiny_vit()).eval()
    split = strategy.split(model)
    pipeline = Pipeline(16, (0.5,) * 3, (0.5,) * 3, torch.device("cpu"), flip=False)
    cached = Inputs(splits, pipeline, split.trunk, False, precision, 64, CPU)
    uncached = Inputs(splits, pipeline, split.trunk, False, precision, 64, CPU)
    assert cached.cache_trunk_outputs() == "computed"
    index = torch.tensor([3, 0, 199, 57, 12])
    with torch.no_grad():
        from_cache = split.rest(cached.batch("test", index).float())
        computed = split.rest(uncached.batch("test", index).float())
    tolerance = {"fp32": 1e-5, "bf16": 2e-2}[precision]
    torch.testing.assert_close(from_cache, computed, rtol=tolerance, atol=tolerance)
    assert uncached.features is None


def test_crop_and_flip_keep_shape_dtype_values_and_identity():
    generator = torch.Generator().manual_seed(0)
    # Image i is filled with the value i + 1 (0 is reserved for padding), so each output can be traced.
    images = (torch.arange(1, 65, dtype=torch.uint8)[:, None, None, None]).expand(64, 3, 32, 32).contiguous()
    out = random_crop_flip(images, generator)
    assert out.shape == images.shape and out.dtype == torch.uint8
    for index in range(64):
        values = set(out[index].unique().tolist())
        assert values <= {0, index + 1}, "an image received another image's pixels"
        assert out[index, :, 16, 16].eq(index + 1).all(), "the centre survives a 4 px shift"
    assert (out == 0).any(), "some crops reach into the padding"


def test_crop_is_a_shifted_window_and_flip_can_be_disabled():
    generator = torch.Generator().manual_seed(1)
    images = torch.randint(1, 255, (16, 3, 8, 8), dtype=torch.uint8)
    out = random_crop_flip(images, generator, flip=False)
    padded = torch.nn.functional.pad(images, (1, 1, 1, 1))  # 1/8 of 8 px
    for index in range(16):
        windows = [padded[index, :, top : top + 8, left : left + 8] for top in range(3) for left in range(3)]
        assert any(torch.equal(out[index], window) for window in windows)


def test_model_input_is_resized_and_normalised_per_channel():
    # Each channel a constant, so resizing keeps the value and the normalisation can be checked exactly.
    values = torch.tensor([0, 51, 255], dtype=torch.uint8)
    images = values.view(1, 3, 1, 1).expand(2, 3, 32, 32).contiguous()
    mean, std = (
        torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1),
        torch.tensor([0.5, 0.25, 2.0]).view(1, 3, 1, 1),
    )
    out = to_model_input(images, 224, mean, std)
    assert out.shape == (2, 3, 224, 224) and out.dtype == torch.float32
    expected = (values.float() / 255 - mean.flatten()) / std.flatten()  # (0 - 0.1) / 0.5 = -0.2, ...
    torch.testing.assert_close(out.mean(dim=(0, 2, 3)), expected)
    torch.testing.assert_close(out.amin(dim=(0, 2, 3)), out.amax(dim=(0, 2, 3)))


def test_epoch_order_shards_each_global_batch_across_ranks():
    batches = {rank: epoch_order(100, 32, torch.Generator().manual_seed(7), rank, 2) for rank in (0, 1)}
    single = epoch_order(100, 32, torch.Generator().manual_seed(7))
    assert len(single) == 3 and all(len(batch) == 32 for batch in single)
    for step, global_batch in enumerate(single):
        assert torch.equal(torch.cat([batches[0][step], batches[1][step]]), global_batch)
    seen = torch.cat(single)
    assert len(seen.unique()) == len(seen), "an image twice in one epoch"


def test_batch_order_of_a_seed_is_drawn_on_the_cpu_and_reproducible():
    generator = order_generator(seed=3, epoch=2)
    assert generator.device.type == "cpu"
    first = epoch_order(100, 10, generator)
    again = epoch_order(100, 10, order_generator(seed=3, epoch=2), device=torch.device("meta"))
    assert all(batch.device.type == "meta" for batch in again), "indices move to the run's device"
    assert torch.equal(torch.cat(first), torch.cat(epoch_order(100, 10, order_generator(3, 2))))
    assert not torch.equal(torch.cat(first), torch.cat(epoch_order(100, 10, order_generator(3, 3))))


def test_config_hash_ignores_device_and_evaluation_batch_size():
    def cell(device: str, eval_batch_size: int, seed: int = 0) -> RunConfig:
        return RunConfig(
            strategy="linear",
            options=strategies.get("linear").Options(),
            dataset="synthetic",
            model=TINY_MODEL,
            model_args=tuple(TINY.items()),
            weights="none",
            weights_sha256="",
            img_size=16,
            seed=seed,
            train=TrainParams(),
            precision="fp32",
            val_fraction=0.1,
            device=device,
            eval_batch_size=eval_batch_size,
        )

    assert cell("cpu", 64).config_hash == cell("cuda:0", 512).config_hash
    assert cell("cpu", 64).config_hash != cell("cpu", 64, seed=1).config_hash


def test_speed_command_writes_rows_that_report_shows(tmp_path):
    from tests.helpers import run_cli, tiny_speed

    # sgd: no FLOPs in the optimiser (Muon's matrix products would count), so steps compare
    rows = tiny_speed(tmp_path, "full,linear", "--optimizer", "sgd")
    assert set(rows["kind"]) == {"strategy", "bare_loop", "forward_only"}
    forward = rows.loc["forward only (no grad)", "step_gflops"]
    # A training step's backward costs two forwards; the linear probe's frozen trunk runs forward only.
    assert rows.loc["full", "step_gflops"] == pytest.approx(3 * forward, rel=0.05)
    assert rows.loc["linear", "step_gflops"] == pytest.approx(forward, rel=0.05)
    assert rows.loc["full", "step_gflops"] == pytest.approx(rows.loc["bare loop (full model)", "step_gflops"])
    assert (rows["ms_per_step"] > 0).all() and rows["mfu"].isna().all(), "no peak is known for a CPU"
    report = run_cli("report", "--results-dir", "results", cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    markdown = (tmp_path / "results" / "report" / "summary.md").read_text()
    assert "# Speed" in markdown
    # Each step's time as a multiple of full's in the same call (no lora here: "-"), as peft compares.
    lines = [line for line in markdown.splitlines() if line.startswith("| ")]
    headers = [cell.strip() for cell in lines[0].strip("|").split("|")]
    linear = next(
        [c.strip() for c in line.strip("|").split("|")] for line in lines if line.startswith("| linear ")
    )
    ratio = rows.loc["linear", "ms_per_step"] / rows.loc["full", "ms_per_step"]
    assert linear[headers.index("time ÷ full")] == f"{ratio:.2f}x"
    assert linear[headers.index("time ÷ lora")] == "-"


def test_a_sweep_computes_a_shared_frozen_trunk_once_and_results_do_not_change(tmp_path, monkeypatch):
    from safetensors.torch import save_file

    from benchmark import cli
    from benchmark.results import store
    from benchmark.sweep import engine as sweep_module
    from benchmark.train.inputs import SharedTrunkOutputs
    from tests.helpers import TINY_ARGS

    torch.manual_seed(0)
    save_file(tiny_vit().state_dict(), str(tmp_path / "pretrained.safetensors"))
    monkeypatch.chdir(tmp_path)
    # A fresh cache, as a new process has: an earlier in-process run of an identical trunk (seed 0's
    # random initialisation is these weights) would rightly be reused.
    monkeypatch.setattr(sweep_module, "SHARED_TRUNKS", SharedTrunkOutputs())
    common = ["run", "--strategies", "linear", "--dataset", "synthetic", *TINY_ARGS, "--epochs", "2"]
    common += ["--weights", "pretrained.safetensors", "--device", "cpu"]
    assert cli.main([*common, "--seeds", "0,1,2", "--results-dir", "sweep"]) == 0
    monkeypatch.setattr(sweep_module, "SHARED_TRUNKS", SharedTrunkOutputs())  # as a new process has
    assert cli.main([*common, "--seeds", "2", "--results-dir", "alone"]) == 0
    sweep = store.read("sweep", "runs").sort_values("seed")
    assert sweep["trunk_cached"].all()
    assert sweep["trunk_cache_reused"].tolist() == [False, True, True], (
        "one pass of the trunk for three seeds"
    )
    # ... whose cost every seed is charged, as measured once (tests/test_costs.py)
    assert sweep["feature_seconds"].nunique() == 1 and (sweep["feature_seconds"] > 0).all()
    alone = store.read("alone", "runs").iloc[0]
    assert not alone["trunk_cache_reused"]
    for column in ("test_top1", "test_loss", "best_val_top1"):
        assert sweep[column].iloc[2] == alone[column], column
    # A tuned sweep's search and final stages share it too: one pass for 2 points, then 2 more seeds.
    monkeypatch.setattr(sweep_module, "SHARED_TRUNKS", SharedTrunkOutputs())
    assert cli.main([*common, "--search", "lr=0.01,0.1", "--seeds", "3,4", "--results-dir", "tuned"]) == 0
    assert store.read("tuned", "runs")["trunk_cache_reused"].tolist().count(False) == 1
