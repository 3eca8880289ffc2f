"""The fast paths change speed, not results: cached trunk outputs, device-side augmentation, batching."""

from __future__ import annotations

import pytest
import torch

import strategies
from benchmark import data
from benchmark.config import RunConfig, TrainParams
from benchmark.pipeline import Pipeline, epoch_order, random_crop_flip, to_model_input
from benchmark.runner import Inputs
from tests.conftest import TINY, TINY_MODEL, tiny_vit


def _config(precision: str) -> RunConfig:
    return RunConfig(
        strategy="linear",
        options=strategies.get("linear").Options(),
        dataset="synthetic",
        model=TINY_MODEL,
        model_args=tuple(TINY.items()),
        weights="none",
        weights_sha256="",
        img_size=16,
        seed=0,
        train=TrainParams(augment=False, eval_batch_size=64),
        precision=precision,
        val_fraction=0.1,
    )


@pytest.mark.parametrize("name", ["linear", "last_k"])
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_cached_and_uncached_trunk_give_the_same_logits(name, precision):
    torch.manual_seed(0)
    splits = data.load("synthetic", "unused", 0.1)
    strategy = strategies.get(name)()
    model = strategy.prepare(tiny_vit()).eval()
    split = strategy.split(model)
    pipeline = Pipeline(16, (0.5,) * 3, (0.5,) * 3, torch.device("cpu"), flip=False)
    cached = Inputs(splits, pipeline, split.trunk, _config(precision), torch.device("cpu"))
    uncached = Inputs(splits, pipeline, split.trunk, _config(precision), torch.device("cpu"))
    assert cached.can_cache()
    cached.build_cache("test")
    index = torch.tensor([3, 0, 199, 57, 12])
    with torch.no_grad():
        from_cache = split.rest(cached.batch("test", index).float())
        computed = split.rest(uncached.batch("test", index).float())
    tolerance = {"fp32": 1e-5, "bf16": 2e-2}[precision]
    torch.testing.assert_close(from_cache, computed, rtol=tolerance, atol=tolerance)
    assert "test" not in uncached.cache


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


def test_model_input_is_resized_and_normalised():
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    mean, std = torch.full((1, 3, 1, 1), 0.5), torch.full((1, 3, 1, 1), 0.5)
    out = to_model_input(images, 224, mean, std)
    assert out.shape == (4, 3, 224, 224) and out.dtype == torch.float32
    assert out.min() >= -1.0 and out.max() <= 1.0


def test_epoch_order_shards_each_global_batch_across_ranks():
    batches = {rank: epoch_order(100, 32, torch.Generator().manual_seed(7), rank, 2) for rank in (0, 1)}
    single = epoch_order(100, 32, torch.Generator().manual_seed(7))
    assert len(single) == 3 and all(len(batch) == 32 for batch in single)
    for step, global_batch in enumerate(single):
        assert torch.equal(torch.cat([batches[0][step], batches[1][step]]), global_batch)
    seen = torch.cat(single)
    assert len(seen.unique()) == len(seen), "an image twice in one epoch"


def test_speed_command_writes_rows_that_report_shows(tmp_path):
    from tests.conftest import TINY_ARGS, run_cli

    result = run_cli(
        "speed",
        "--strategies",
        "full,linear",
        *TINY_ARGS,
        "--batch-size",
        "4",
        "--warmup-steps",
        "1",
        "--steps",
        "2",
        "--device",
        "cpu",
        "--results-dir",
        "results",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    import pandas as pd

    rows = pd.read_parquet(tmp_path / "results" / "speed").set_index("strategy")
    assert set(rows["kind"]) == {"strategy", "bare_loop", "forward_only"}
    forward = rows.loc["forward only (no grad)", "step_gflops"]
    # A training step's backward costs two forwards; the linear probe's frozen trunk runs forward only.
    assert rows.loc["full", "step_gflops"] == pytest.approx(3 * forward, rel=0.05)
    assert rows.loc["linear", "step_gflops"] == pytest.approx(forward, rel=0.05)
    assert rows.loc["full", "step_gflops"] == pytest.approx(rows.loc["bare loop (full model)", "step_gflops"])
    assert (rows["ms_per_step"] > 0).all() and rows["mfu"].isna().all(), "no peak is known for a CPU"
    report = run_cli("report", "--results-dir", "results", cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    assert "# Speed" in (tmp_path / "results" / "report" / "summary.md").read_text()
