"""A results folder written before benchmark/ was split into subpackages (commit 0ecdbf4, kept in
tests/data/results_0ecdbf4, TensorBoard files left out) is read, resumed and reported after it as before:
its cells count as done, a rerun with more seeds trains only the new ones, and the report compares them.

It was made with the command below, run from the repository's root at that commit; this test runs the same
command (and then the same with a third seed) on a copy of the folder.
"""

from __future__ import annotations

import shutil

import pytest

from benchmark import cli
from benchmark.results import store
from tests.helpers import ROOT

OLD = ROOT / "tests" / "data" / "results_0ecdbf4"
COMMAND = [
    "run",
    "--strategies",
    "lora,linear",
    "--dataset",
    "digits",
    "--model",
    "vit_tiny_patch16_224",
    "--img-size",
    "32",
    "--model-arg",
    "patch_size=8",
    "--model-arg",
    "depth=2",
    "--model-arg",
    "embed_dim=64",
    "--model-arg",
    "num_heads=4",
    "--weights",
    "weights/glyph_vit_p8_d2_w64.safetensors",
    "--epochs",
    "2",
    "--train-size",
    "256",
    "--search",
    "lr=0.001,0.003",
    "--device",
    "cpu",
]


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # the command names the weights by a path relative to the repository
    copy = tmp_path / "results"
    shutil.copytree(OLD, copy)
    return copy


def test_an_older_folder_is_done_resumes_with_a_new_seed_and_reports(folder, capsys):
    before = store.read(folder, "runs")
    assert len(before) == 6 and (before["status"] == "ok").all()
    status = cli.main([*COMMAND, "--seeds", "0,1", "--results-dir", str(folder)])
    # After a change to the code that trains lora or linear the old rows are stale, as they should be: then
    # add evidence that the numbers are unchanged (benchmark/results/code_equivalents.py says how) or
    # write this folder again with the new code.
    assert status == 0, capsys.readouterr().err
    assert "6 skipped as already done" in capsys.readouterr().err
    assert len(store.read(folder, "runs")) == 6  # nothing trained again

    assert cli.main([*COMMAND, "--seeds", "0,1,2", "--results-dir", str(folder)]) == 0
    after = store.read(folder, "runs")
    new = after[~after["run_id"].isin(before["run_id"])]
    assert sorted(new["strategy"]) == ["linear", "lora"] and set(new["seed"]) == {2}
    assert (new["stage"] == "final").all()

    assert cli.main(["report", "--results-dir", str(folder)]) == 0
    summary = (folder / "report" / "summary.md").read_text()
    for strategy in ("lora", "linear"):
        line = next(line for line in summary.splitlines() if line.startswith(f"| {strategy} "))
        assert "| 3/3 |" in line, line  # the old seeds and the new one, in one cell
