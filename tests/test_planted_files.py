"""Files someone else put in a data, results or weights folder: they run no code, stay where they belong,
and a damaged one is one line (or, for a checkpoint, set aside so that the cell starts fresh)."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch

from benchmark import cli
from benchmark.results import store
from tests.cifar_layout import write_archive
from tests.helpers import TINY_ARGS, png_header, tiny_run

# Its module fixtures are computed once: every test of this file runs on one pytest-xdist worker.
pytestmark = pytest.mark.xdist_group("test_planted_files")


class Payload:
    """Unpickling this creates the marker file: the harmless stand-in for code run by a planted file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


def run_here(argv: list[str], folder: Path, capsys, monkeypatch) -> tuple[int, str]:
    """`cli.main(argv)` in `folder`, offline: the exit status and stderr; stdout stays in capsys."""
    monkeypatch.chdir(folder)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    status = cli.main(argv)
    captured = capsys.readouterr()
    print(captured.out, end="")
    return status, captured.err


def test_planted_cifar_archive_runs_no_code(tmp_path, capsys, monkeypatch):
    marker = tmp_path / "marker"
    written = write_archive(tmp_path / "data", "cifar10")
    staging = tmp_path / "staging" / "cifar-10-batches-py"
    staging.mkdir(parents=True)
    shutil.unpack_archive(written["archive"], tmp_path / "staging")
    (staging / "test_batch").write_bytes(pickle.dumps({"data": Payload(marker), "labels": [0]}))
    shutil.make_archive(str(written["archive"]).removesuffix(".tar.gz"), "gztar", tmp_path / "staging")
    argv = ["run", "--dataset", "cifar10", "--strategies", "linear", *TINY_ARGS, "--no-pretrained"]
    status, err = run_here([*argv, "--no-download", "--device", "cpu"], tmp_path, capsys, monkeypatch)
    assert not marker.exists(), "the planted archive ran its payload"
    assert status == 2 and len(err.strip().splitlines()) == 1, err
    assert "test_batch is not a readable CIFAR batch" in err and "refers to io.open" in err
    assert not (tmp_path / "results").exists()


def _cell_hash(folder: Path, capsys, monkeypatch) -> str:
    status, _ = run_here([*tiny_run("linear", epochs=1), "--dry-run", "--json"], folder, capsys, monkeypatch)
    assert status == 0
    return json.loads(capsys.readouterr().out)[0]["config_hash"]


CHECKPOINTS = {
    "payload": lambda path, config_hash: torch.save(
        {"config_hash": config_hash, "progress": Payload(path.parent.parent.parent / "marker")}, path
    ),
    "truncated": lambda path, config_hash: (
        torch.save({"config_hash": config_hash, "model": torch.zeros(1000)}, path),
        path.write_bytes(path.read_bytes()[:300]),
    ),
    "missing keys": lambda path, config_hash: torch.save({"config_hash": config_hash}, path),
}


@pytest.mark.parametrize("kind", list(CHECKPOINTS))
def test_unreadable_checkpoint_runs_no_code_and_is_set_aside(kind, tmp_path, capsys, monkeypatch):
    config_hash = _cell_hash(tmp_path, capsys, monkeypatch)
    path = store.checkpoint_path(tmp_path / "results", config_hash)
    path.parent.mkdir(parents=True)
    CHECKPOINTS[kind](path, config_hash)
    status, err = run_here(tiny_run("linear", epochs=1), tmp_path, capsys, monkeypatch)
    assert not (tmp_path / "marker").exists(), "the planted checkpoint ran its payload"
    assert status == 0, err
    warnings = [line for line in err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and f"set aside as {path.name}.unreadable" in warnings[0], err
    runs = store.read(tmp_path / "results", "runs")
    assert list(runs["status"]) == ["ok"] and runs.loc[0, "resumed_from_epoch"] == 0
    assert sorted(p.name for p in path.parent.iterdir()) == [f"{path.name}.unreadable"]


@pytest.fixture(scope="module")
def kept(tmp_path_factory) -> Path:
    """A folder with one kept run (linear, 1 epoch), its results folder recorded by absolute path."""
    folder = tmp_path_factory.mktemp("kept")
    argv = [*tiny_run("linear", epochs=1), "--keep-weights", "--results-dir", str(folder / "results")]
    assert cli.main(argv) == 0
    return folder / "results"


def test_a_copied_results_folder_uses_its_own_weights(kept, tmp_path, capsys, monkeypatch):
    copy = shutil.copytree(kept, tmp_path / "copy")
    original = kept / "weights" / next(p.name for p in (kept / "weights").iterdir())
    saved = original.read_bytes()
    original.write_bytes(b"damaged")  # the path in the row; the copy must not read it
    try:
        status, err = run_here(
            ["eval", "2", "--results-dir", str(copy), "--device", "cpu", "--json"],
            tmp_path,
            capsys,
            monkeypatch,
        )
    finally:
        original.write_bytes(saved)
    assert status == 0, err
    row = store.read(copy, "runs").iloc[0]
    assert json.loads(capsys.readouterr().out)["top1"] == row["test_top1"]


def _safetensors_without_metadata(path: Path) -> None:
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, str(path))


KEPT_DAMAGE = {
    "damaged": (lambda path: path.write_bytes(b"\x00" * 64), "is not a kept-weights file"),
    "no metadata": (_safetensors_without_metadata, "is not a kept-weights file"),
    "missing": (lambda path: path.unlink(), "are missing"),
}


@pytest.mark.parametrize("command", ["eval", "predict"])
@pytest.mark.parametrize("damage", list(KEPT_DAMAGE))
def test_damaged_kept_weights_are_one_line(kept, tmp_path, capsys, monkeypatch, damage, command):
    copy = shutil.copytree(kept, tmp_path / "copy")
    write, expected = KEPT_DAMAGE[damage]
    write(next((copy / "weights").iterdir()))
    extra = ["--device", "cpu"] if command == "eval" else ["x.png"]
    status, err = run_here([command, "2", "--results-dir", str(copy), *extra], tmp_path, capsys, monkeypatch)
    assert status == 2 and len(err.strip().splitlines()) == 1 and expected in err, err


def test_predict_says_what_a_path_is_and_answers_the_others(kept, tmp_path, capsys, monkeypatch):
    (tmp_path / "a_folder").mkdir()
    (tmp_path / "loop.png").symlink_to(tmp_path / "loop.png")
    (tmp_path / "huge.png").write_bytes(png_header(20000, 20000))
    from PIL import Image

    Image.new("RGB", (20, 20), "red").save(tmp_path / "red.png")
    files = ["a_folder", "loop.png", "huge.png", "absent.png", "red.png"]
    status, err = run_here(
        ["predict", "2", "--results-dir", str(kept), *files], tmp_path, capsys, monkeypatch
    )
    assert status == 1  # some answered, some not
    assert capsys.readouterr().out.startswith("red.png\n")
    assert err.strip().splitlines() == [
        "error: a_folder: a directory, not an image file",
        "error: loop.png: a symbolic link loop",
        f"error: huge.png: too many pixels to read safely (more than {2 * Image.MAX_IMAGE_PIXELS:,}, "
        "Pillow's limit)",
        "error: absent.png: no such file",
    ]


def test_inspect_keeps_a_planted_run_id_inside_out(kept, tmp_path, capsys, monkeypatch):
    copy = shutil.copytree(kept, tmp_path / "copy")
    row = store.read(copy, "runs")
    weights = next((copy / "weights").iterdir())
    row["run_id"] = "../../escaped/x"
    store.write_atomic(row, copy / "runs" / "planted.parquet", "runs")
    (copy / "runs" / f"{kept_run_id(kept)}.parquet").unlink()
    out = tmp_path / "out"
    status, err = run_here(
        ["inspect", "../../esc", "--results-dir", str(copy), "--out", str(out)], tmp_path, capsys, monkeypatch
    )
    assert status == 0, err
    outside = [p for p in tmp_path.rglob("*.png") if out not in p.parents]
    assert outside == [] and weights.exists()
    assert sorted(p.name for p in out.iterdir())[0].startswith("-..-escaped-x__")


def kept_run_id(results: Path) -> str:
    return pd.read_parquet(next((results / "runs").iterdir()))["run_id"].item()
