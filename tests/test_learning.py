"""Real learning on real data: the offline demo's recipe on scikit-learn's digits."""

from __future__ import annotations

import pandas as pd

from benchmark.cli import DEMO_ARGS
from tests.conftest import run_cli


def test_full_fine_tune_learns_digits(tmp_path):
    # The demo's recipe, shortened to 20 epochs (the last flag wins): enough to show learning.
    argv = ["run", *DEMO_ARGS, "--epochs", "20", "--strategies", "full", "--results-dir", "results"]
    result = run_cli(*argv, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    row = pd.read_parquet(tmp_path / "results" / "runs").iloc[0]
    assert row["status"] == "ok"
    assert row["test_top1"] >= 0.80  # chance is 0.10
    assert row["n_test"] == 359 and row["dataset"] == "digits"
