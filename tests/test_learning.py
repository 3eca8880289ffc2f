"""Real learning on real data: the offline demo's recipe on scikit-learn's digits."""

from __future__ import annotations

import pytest

from benchmark import cli, store


@pytest.mark.slow
def test_full_fine_tune_learns_digits(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the demo's own recipe: a 2-block ViT from random initialisation
    assert cli.main(["run", *cli.DEMO_ARGS, "--strategies", "full"]) == 0
    row = store.read(tmp_path / "results", "runs").iloc[0]
    assert row["status"] == "ok"
    assert row["test_top1"] >= 0.85  # chance is 0.10; measured 0.908
    assert row["n_test"] == 359 and row["dataset"] == "digits"
