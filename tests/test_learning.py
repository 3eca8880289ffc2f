"""Real learning on real data: the offline demo's recipe on scikit-learn's digits."""

from __future__ import annotations

from benchmark import cli, store


def test_full_fine_tune_learns_digits(tmp_path, monkeypatch):
    # The demo's recipe on a 2-block ViT (the last --model-arg wins): a quarter of the demo's cost.
    monkeypatch.chdir(tmp_path)
    assert cli.main(["run", *cli.DEMO_ARGS, "--strategies", "full", "--model-arg", "depth=2"]) == 0
    row = store.read(tmp_path / "results", "runs").iloc[0]
    assert row["status"] == "ok"
    assert row["test_top1"] >= 0.85  # chance is 0.10; measured 0.908
    assert row["n_test"] == 359 and row["dataset"] == "digits"
