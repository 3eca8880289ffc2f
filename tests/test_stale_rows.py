"""Rows of another code version or torch/timm/peft major.minor are never skipped over or averaged in silently:
`run` refuses (exit 2, one line) unless told `--stale rerun` or `--stale keep`, the report keeps them apart,
a checkpoint of another identity is not resumed, and augmentation draws do not depend on the device."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch

import strategies
from benchmark import cli
from benchmark.data.batches import random_crop_flip
from benchmark.report import build, cells, tables
from benchmark.results import identity, store
from benchmark.train import checkpoint
from benchmark.train.prepare import prepare_model
from benchmark.train.step import augmentation_generator, make_scheduler
from tests.helpers import ROOT, run_cli, tiny_run, tiny_vit

# Its module fixtures are computed once: every test of this file runs on one pytest-xdist worker.
pytestmark = pytest.mark.xdist_group("test_stale_rows")

CELL = tiny_run("linear", epochs=1)


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A results folder with one finished cell (linear, seed 0)."""
    folder = tmp_path_factory.mktemp("finished")
    assert cli.main([*CELL, "--results-dir", str(folder / "results")]) == 0
    return folder / "results"


def with_row_changed(finished: Path, folder: Path, **values: object) -> tuple[Path, pd.DataFrame]:
    """A copy of the results in `folder`, its row rewritten with `values` (as older code or libraries
    would have written it); the rewritten row."""
    results = shutil.copytree(finished, folder / "results")
    path = next((results / "runs").iterdir())
    row = pd.read_parquet(path).assign(**values)
    store.write_atomic(row, path, "runs")
    return results, row


def files(folder: Path) -> dict[str, int]:
    return {str(path.relative_to(folder)): path.stat().st_mtime_ns for path in folder.rglob("*")}


# --- the code version -----------------------------------------------------------------------------------


def test_comment_and_docstring_edits_keep_the_hash_and_a_code_edit_changes_it():
    source = (ROOT / "strategies" / "lora.py").read_text()
    reworded = source.replace('"""', '"""Reworded. ', 1).replace("\n\n", "\n\n# a new comment\n", 1)
    assert reworded != source
    assert identity.source_hash(reworded) == identity.source_hash(source)
    assert identity.source_hash(
        source.replace("r: int = option(8,", "r: int = option(9,", 1)
    ) != identity.source_hash(source)


def test_the_code_version_covers_the_strategy_modules_it_imports_and_the_training_modules():
    modules = identity.strategy_modules("strategies.lora")
    assert {"strategies.lora", "strategies._peft", "strategies.base"} <= set(modules)
    assert "strategies.ia3" not in modules and "strategies" not in modules  # the registry is not followed
    assert {"benchmark.train.runner", "benchmark.train.step", "benchmark.data.batches"} <= set(
        identity.TRAINING_MODULES
    )
    assert identity.code_version("lora") != identity.code_version("ia3")


def test_library_identity_is_major_minor():
    assert identity.major_minor("2.14.1+cu121") == identity.major_minor("2.14.0") == "2.14"
    row = {"torch_version": "2.14.1", "timm_version": "1.0.31", "peft_version": "0.21.2"}
    assert identity.libraries(row) == "torch 2.14, timm 1.0, peft 0.21"


# --- run ------------------------------------------------------------------------------------------------


def test_run_refuses_a_cell_answered_by_older_code_in_one_line_and_writes_nothing(finished, tmp_path):
    results, _ = with_row_changed(finished, tmp_path, code_version="000000000000")
    before = files(results)
    refused = run_cli(*CELL, cwd=tmp_path)
    assert refused.returncode == 2
    line = refused.stderr.strip()
    assert "\n" not in line and "Traceback" not in line
    assert (
        "1 cell(s)" in line
        and "(code changed: 1)" in line
        and "--stale rerun" in line
        and "--stale keep" in line
    )
    assert files(results) == before


def test_a_library_minor_upgrade_is_stale_and_a_patch_upgrade_is_not(finished, tmp_path):
    now = identity.major_minor(identity._current_versions()["peft"])
    major, minor = map(int, now.split("."))
    results, _ = with_row_changed(finished, tmp_path / "minor", peft_version=f"{major}.{minor + 1}.0")
    refused = run_cli(*CELL, cwd=tmp_path / "minor")
    assert refused.returncode == 2 and f"peft {major}.{minor + 1} -> {now}" in refused.stderr
    results, _ = with_row_changed(finished, tmp_path / "patch", peft_version=f"{now}.999")
    kept = run_cli(*CELL, cwd=tmp_path / "patch")
    assert kept.returncode == 0, kept.stderr
    assert len(store.read(results, "runs")) == 1, "a patch release left the answer current"


def test_stale_rerun_trains_again_and_the_new_row_supersedes(finished, tmp_path):
    results, old = with_row_changed(finished, tmp_path, code_version="000000000000")
    rerun = run_cli(*CELL, "--stale", "rerun", cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    runs = store.read(results, "runs").set_index("run_id")
    assert sorted(runs["status"]) == ["ok", "superseded"]
    assert "--stale rerun" in runs.loc[old["run_id"].item(), "error"]
    assert runs.loc[runs["status"] == "ok", "code_version"].item() == identity.code_version("linear")
    again = run_cli(*CELL, cwd=tmp_path)  # the new answer is current: skipped, no refusal
    assert again.returncode == 0 and len(store.read(results, "runs")) == 2


def test_stale_keep_skips_the_cell_as_done(finished, tmp_path):
    results, _ = with_row_changed(finished, tmp_path, code_version="000000000000")
    kept = run_cli(*CELL, "--stale", "keep", cwd=tmp_path)
    assert kept.returncode == 0, kept.stderr
    assert store.read(results, "runs")["status"].tolist() == ["ok"]


def test_a_bad_stale_choice_is_one_line_naming_the_choices(tmp_path):
    bad = run_cli(*CELL, "--stale", "maybe", cwd=tmp_path)
    assert bad.returncode == 2 and "refuse" in bad.stderr and "rerun" in bad.stderr and "keep" in bad.stderr


# --- report ---------------------------------------------------------------------------------------------


def another_seed(finished: Path, results: Path, seed: int, started: str, **values: object) -> None:
    """Another seed of the finished cell, as a run started on `started` (run ids start with the time) would
    have written it with `values`: test top-1 0.1234 (no real run gives that)."""
    row = pd.read_parquet(next((finished / "runs").iterdir()))
    run_id = f"{started}T000000.000000-linear-{seed:08d}"
    row = row.assign(run_id=run_id, seed=seed, config_hash=f"{seed:016d}", test_top1=0.1234, **values)
    store.write_atomic(row, results / "runs" / f"{run_id}.parquet", "runs")


def summary_markdown(runs: pd.DataFrame) -> str:
    """summary.md's tables as `report` writes them, without the figures (seconds each on one core)."""
    runs = identity.separate(runs)
    table = tables.with_reference(build.aggregate(runs), cells.seed_outcomes(runs), "full")
    return build.markdown(build.block_tables(table, runs, "full"), runs, None)


def test_the_report_never_averages_across_code_or_library_versions_and_shows_them(finished, tmp_path):
    results = shutil.copytree(finished, tmp_path / "results")
    current = store.read(results, "runs")["test_top1"].item()
    another_seed(finished, results, 1, "20000101", code_version="000000000000")  # older code, older run
    another_seed(finished, results, 2, "29991231", torch_version="1.13.1")  # a newer run, another torch
    table = build.aggregate(store.read(results, "runs")).set_index("role")
    now = identity.major_minor(torch.__version__)
    torches = sorted(table.loc["selected", "libraries"].str.split(",").str[0])
    assert torches == sorted(["torch 1.13", f"torch {now}"])
    assert table.loc["selected", "test_top1"].sort_values().tolist() == [
        pytest.approx(12.34),  # the other torch's seed, in a block of its own
        pytest.approx(100 * current),  # seed 0 alone: the older code's seed 1 is not in its mean
    ]
    older = table.loc[[identity.OLDER_CODE]]
    assert older["test_top1"].tolist() == [pytest.approx(12.34)] and older["seeds"].tolist() == [1]
    text = summary_markdown(store.read(results, "runs"))
    assert "Not selected" in text and identity.OLDER_CODE in text
    assert "torch 1.13, timm" in text and f"torch {now}, timm" in text and "peft" in text


# --- checkpoints and augmentation -----------------------------------------------------------------------


def test_a_checkpoint_of_another_identity_is_set_aside_and_the_cell_starts_fresh(tmp_path):
    prepared = prepare_model("linear", strategies.get("linear").Options(), tiny_vit())
    trained = [param for param in prepared.model.parameters() if param.requires_grad]
    optimizer = torch.optim.SGD(trained, lr=0.1)
    scheduler = make_scheduler(optimizer, 0, 10)
    path, progress = tmp_path / "cell.pt", checkpoint.Progress(epoch=1, best_epoch=1, best_val_top1=0.5)
    checkpoint.save(path, "cell", prepared, optimizer, scheduler, progress)
    warnings: list[str] = []
    assert checkpoint.load(path, "cell", prepared, optimizer, scheduler, warnings.append).epoch == 1
    state = torch.load(path, weights_only=True)
    torch.save(state | {"identity": "code 000000000000, torch 1.13, timm 0.9, peft 0.10"}, path)
    assert checkpoint.load(path, "cell", prepared, optimizer, scheduler, warnings.append).epoch == 0
    assert not path.exists() and path.with_name("cell.pt.stale").exists()
    assert len(warnings) == 1 and "starts fresh" in warnings[0]


def test_augmentation_is_drawn_on_the_cpu_whatever_the_run_device():
    generator = augmentation_generator(seed=0, epoch=0, rank=0)
    assert generator.device.type == "cpu"
    if torch.cuda.is_available():  # the same stream on the GPU as on the CPU
        images = torch.randint(0, 255, (8, 3, 16, 16), dtype=torch.uint8)
        on_cpu = random_crop_flip(images, augmentation_generator(0, 0, 0))
        on_gpu = random_crop_flip(images.cuda(), augmentation_generator(0, 0, 0))
        assert torch.equal(on_cpu, on_gpu.cpu())
