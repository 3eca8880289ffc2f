"""Fixtures shared by the test files, and the threads each test worker may use; plain helpers live in
tests/helpers.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# No test reaches the network: set before anything imports huggingface_hub, which reads it once.
os.environ["HF_HUB_OFFLINE"] = "1"

import torch  # noqa: E402

from tests.helpers import SWEEP, run_cli  # noqa: E402

# pytest-xdist runs one worker per core (`-n auto` in pyproject.toml). Each worker, and each process a test
# starts, gets its share of the cores: two workers of two threads each on two cores would thrash.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
_CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
_THREADS = max(1, _CORES // _WORKERS)
torch.set_num_threads(_THREADS)
os.environ["OMP_NUM_THREADS"] = str(_THREADS)


@pytest.fixture(scope="session")
def sweep_results(tmp_path_factory) -> Path:
    """The SWEEP's results, written by the CLI's `main` as a user's command would write them."""
    folder = tmp_path_factory.mktemp("sweep")
    result = run_cli(*SWEEP, cwd=folder)
    assert result.returncode == 0, result.stderr
    return folder / "results"
