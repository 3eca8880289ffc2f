"""Real learning on real data: the offline demo's recipe on scikit-learn's digits, from random weights."""

from __future__ import annotations

import pytest

from benchmark import cli
from benchmark.cli.commands import DEMO_CONFIG
from benchmark.results import store


@pytest.mark.slow
def test_full_fine_tune_learns_digits(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the demo's own file and recipe, a 2-block ViT from random initialisation
    # linear too: the file sets linear's recipe, and --set may only name strategies of the run (about 1 s)
    args = [
        "run",
        "--config",
        str(DEMO_CONFIG),
        "--seeds",
        "0",
        "--no-pretrained",
        "--strategies",
        "full,linear",
    ]
    assert cli.main([*args, "--epochs", "40", "--warmup-epochs", "2"]) == 0  # its own budget, not the demo's
    runs = store.read(tmp_path / "results", "runs")
    row = runs[runs["strategy"] == "full"].iloc[0]
    assert row["status"] == "ok" and row["weights"] == "none (random initialisation)"
    assert row["test_top1"] >= 0.85  # chance is 0.10
    assert row["n_test"] == 359 and row["dataset"] == "digits"
