"""Test helpers: a tiny ViT, its command-line flags, the CLI in a subprocess or in-process, and planted files."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import struct
import subprocess
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import timm

ROOT = Path(__file__).resolve().parent.parent
TINY = {"patch_size": 4, "depth": 2, "embed_dim": 32, "num_heads": 2}
TINY_MODEL = "vit_tiny_patch16_224"
TINY_IMG = 16
TINY_ARGS = ["--model", TINY_MODEL, "--img-size", str(TINY_IMG)] + [
    item for key, value in TINY.items() for item in ("--model-arg", f"{key}={value}")
]


def tiny_vit(num_classes: int = 10, img_size: int = TINY_IMG, **overrides):
    return timm.create_model(TINY_MODEL, num_classes=num_classes, img_size=img_size, **(TINY | overrides))


def run_process(
    *args: str, cwd: Path, timeout: float = 600, env: dict | None = None
) -> subprocess.CompletedProcess:
    """`python -m benchmark ARGS` in a new process, in `cwd`: for tests of what only a process shows (start-up
    imports, a traceback reaching the terminal, signals, torchrun)."""
    environment = os.environ | {"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"} | (env or {})
    return subprocess.run(
        [sys.executable, "-m", "benchmark", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environment,
    )


@contextlib.contextmanager
def _in(cwd: Path, environment: dict[str, str]) -> Iterator[None]:
    """Run the body in `cwd` with `environment` added to os.environ, as a new process would be."""
    saved_cwd, saved = Path.cwd(), {key: os.environ.get(key) for key in environment}
    os.chdir(cwd)
    os.environ.update(environment)
    try:
        yield
    finally:
        os.chdir(saved_cwd)
        for key, value in saved.items():
            if value is None:
                del os.environ[key]
            else:
                os.environ[key] = value


def tiny_speed(tmp_path: Path, strategies: str, *extra: str) -> pd.DataFrame:
    """`speed` on the tiny ViT (batch 4, 1 warm-up and 2 timed steps, CPU) in `tmp_path`: its rows by strategy."""
    result = run_cli(
        "speed", "--strategies", strategies, *TINY_ARGS, "--batch-size", "4", "--warmup-steps", "1",
        "--steps", "2", "--device", "cpu", "--results-dir", "results", *extra, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return pd.read_parquet(tmp_path / "results" / "speed").set_index("strategy")


def run_cli(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """`python -m benchmark ARGS` as a user runs it, in `cwd`, but in this process: the same `main`, exit
    status, standard output and standard error, without a new interpreter importing torch each time."""
    from benchmark import cli

    stdout, stderr = io.StringIO(), io.StringIO()
    with (
        _in(cwd, {"HF_HUB_OFFLINE": "1"} | (env or {})),
        contextlib.redirect_stdout(stdout),
        contextlib.redirect_stderr(stderr),
    ):
        try:
            code = cli.main(list(args))
        except SystemExit as exit_:  # argparse's --help
            code = exit_.code if isinstance(exit_.code, int) else 0
    return subprocess.CompletedProcess(list(args), code, stdout.getvalue(), stderr.getvalue())


def start_cli(*args: str, cwd: Path, env: dict | None = None) -> subprocess.Popen:
    """`python -m benchmark ARGS` in the background, for tests that signal or race it. Ctrl-C is restored to
    its default in the child: a shell without job control (a CI script run with `&`, nohup) starts
    background commands with SIGINT ignored, and Python then never turns it into KeyboardInterrupt."""
    environment = os.environ | {"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"} | (env or {})
    return subprocess.Popen(
        [sys.executable, "-m", "benchmark", *args],
        cwd=cwd,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def tiny_run(strategies: str, epochs: int) -> list[str]:
    """A `run` of the tiny ViT from random initialisation on synthetic data, on the CPU, into ./results."""
    return [
        "run",
        "--strategies",
        strategies,
        "--dataset",
        "synthetic",
        *TINY_ARGS,
        "--no-pretrained",
        "--epochs",
        str(epochs),
        "--device",
        "cpu",
        "--results-dir",
        "results",
    ]


# Every strategy, two seeds, two epochs, on synthetic data with a tiny ViT.
# The shared sweep that the report tests read: one or more strategies of every family and every path of the
# runner that changes a row (a cached trunk, a strategy's own state, lr ratios, an effective count, a wider
# head, no pretrained weights by definition). Every registered strategy runs end to end through the same
# CLI in tests/test_shipped_backbone.py; the report's cost grows with the strategies, so it reads these.
SWEEP_STRATEGIES = (
    "linear",
    "full",
    "scratch",
    "last_k",
    "bitfit",
    "lora",
    "adalora",
    "boft",
    "fourierft",
    "adaptformer",
    "vpt_deep",
    "vqt",
)
SWEEP = [
    *tiny_run(",".join(SWEEP_STRATEGIES), epochs=2),
    "--seeds",
    "0,1",
]


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares width x height grey pixels and holds none: Pillow reads the header, then refuses
    the size before decoding anything."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"") + chunk(b"IEND", b"")
