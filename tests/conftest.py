"""Fixtures shared by the test files; plain helpers live in tests/helpers.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import SWEEP, run_cli


@pytest.fixture(scope="session")
def sweep_results(tmp_path_factory) -> Path:
    """The SWEEP's results, written by the real CLI."""
    folder = tmp_path_factory.mktemp("sweep")
    result = run_cli(*SWEEP, cwd=folder)
    assert result.returncode == 0, result.stderr
    return folder / "results"
