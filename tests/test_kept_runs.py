"""eval, predict and inspect on a run kept with --keep-weights, as a user runs them (in-process CLI)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from benchmark import cli
from benchmark.results import store

# Its module fixtures are computed once: every test of this file runs on one pytest-xdist worker.
pytestmark = pytest.mark.xdist_group("test_kept_runs")

# A digits run like the demo's, smaller and from random initialisation: 2 blocks of width 32, 3 epochs.
DIGITS_RUN = ["run", "--dataset", "digits", "--model", "vit_tiny_patch16_224", "--no-pretrained"]
DIGITS_RUN += ["--img-size", "32", "--model-arg", "patch_size=8", "--model-arg", "depth=2"]
DIGITS_RUN += ["--model-arg", "embed_dim=32", "--model-arg", "num_heads=2", "--optimizer", "adamw"]
DIGITS_RUN += ["--lr", "3e-3", "--weight-decay", "0.05", "--batch-size", "64", "--warmup-epochs", "2"]
DIGITS_RUN += ["--epochs", "3", "--device", "cpu", "--strategies", "lora", "--keep-weights"]


@pytest.fixture(scope="module")
def kept_run(tmp_path_factory) -> tuple:
    folder = tmp_path_factory.mktemp("kept")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        assert cli.main(DIGITS_RUN) == 0
    row = store.read(folder / "results", "runs").iloc[0]
    return folder, row


def main_in(folder, argv: list[str], capsys, monkeypatch) -> tuple[int, str, str]:
    monkeypatch.chdir(folder)
    status = cli.main(argv)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_eval_reproduces_the_row_on_its_own_test_split(kept_run, capsys, monkeypatch):
    folder, row = kept_run
    status, out, _ = main_in(
        folder, ["eval", row["run_id"][:20], "--device", "cpu", "--json"], capsys, monkeypatch
    )
    assert status == 0
    result = json.loads(out)
    assert result["images"] == row["n_test"] and result["split"] == "test"
    assert result["top1"] == row["test_top1"] and result["top5"] == row["test_top5"]
    assert result["loss"] == pytest.approx(row["test_loss"], rel=1e-6)
    assert result["macro_f1"] == pytest.approx(row["test_macro_f1"], abs=1e-12)
    status, out, _ = main_in(
        folder, ["eval", row["run_id"], "--split", "val", "--device", "cpu"], capsys, monkeypatch
    )
    assert status == 0 and f"({row['n_val']} images)" in out


def test_predict_answers_each_image_with_five_classes(kept_run, tmp_path, capsys, monkeypatch):
    folder, row = kept_run
    paths = []
    for index, value in enumerate((0, 128, 255)):
        path = tmp_path / f"image{index}.png"
        Image.fromarray(np.full((8, 8), value, dtype=np.uint8)).save(path)
        paths.append(str(path))
    (tmp_path / "notes.png").write_text("not an image")
    argv = ["predict", row["run_id"], *paths, str(tmp_path / "notes.png")]
    status, out, err = main_in(folder, argv, capsys, monkeypatch)
    assert status == 1, "one file was not an image"
    assert len(err.strip().splitlines()) == 1 and "notes.png" in err
    blocks = out.strip().split("\n" + str(tmp_path))
    assert len(blocks) == 3
    for block in blocks:
        probabilities = [float(line.split("%")[0]) / 100 for line in block.splitlines()[1:]]
        assert len(probabilities) == 5 and sum(probabilities) <= 1 + 1e-3
        assert probabilities == sorted(probabilities, reverse=True)


def test_inspect_writes_four_figures_that_the_report_links(kept_run, capsys, monkeypatch):
    folder, row = kept_run
    status, _, err = main_in(folder, ["inspect", row["run_id"]], capsys, monkeypatch)
    assert status == 0, err
    report = folder / "results" / "report"
    for name in ("attention_rollout", "position_similarity", "patch_filters", "sample_predictions"):
        path = report / f"{row['run_id']}__{name}.png"
        assert path.stat().st_size > 5_000 and path.read_bytes()[:4] == b"\x89PNG"
    assert main_in(folder, ["report"], capsys, monkeypatch)[0] == 0
    summary = (report / "summary.md").read_text()
    assert f"({row['run_id']}__attention_rollout.png)" in summary


def test_unknown_run_is_one_line_exit_2(kept_run, capsys, monkeypatch):
    folder, _ = kept_run
    status, _, err = main_in(folder, ["eval", "nonexistent"], capsys, monkeypatch)
    assert status == 2 and len(err.strip().splitlines()) == 1 and "no run 'nonexistent'" in err
    assert pd.notna(store.read(folder / "results", "runs").iloc[0]["weights_file"])
