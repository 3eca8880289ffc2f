"""What a running sweep shows: a few plain lines per run in a pipe or log, every epoch with --verbose, and
rich's live display on a terminal with one summary line per finished run."""

from __future__ import annotations

import io
import re

from rich.console import Console

from benchmark.sweep.progress import LiveProgress, Progress, for_console
from tests.helpers import run_cli, tiny_run

EPOCHS = 3


def test_piped_output_is_a_few_lines_per_run_and_verbose_adds_every_epoch(tmp_path):
    quiet = run_cli(*tiny_run("linear,bitfit", epochs=EPOCHS), cwd=tmp_path)
    assert quiet.returncode == 0, quiet.stderr
    lines = quiet.stderr.strip().splitlines()
    starts = [line for line in lines if re.match(r"\[\d/2\] ", line)]
    assert len(starts) == 2 and all("seed 0" in line for line in starts)
    assert len([line for line in lines if line.startswith("  ok: test top-1 ")]) == 2
    # Epoch lines come at most every PLAIN_EPOCH_INTERVAL seconds (tested below, without a clock).

    verbose = run_cli(*tiny_run("linear", epochs=EPOCHS), "--force", "--verbose", cwd=tmp_path)
    assert verbose.returncode == 0, verbose.stderr
    epoch_lines = [line for line in verbose.stderr.splitlines() if line.startswith("  epoch ")]
    assert [line.split()[1] for line in epoch_lines] == [f"{n}/{EPOCHS}" for n in range(1, EPOCHS + 1)]


def test_plain_lines_show_an_epoch_at_most_every_interval():
    lines: list[str] = []
    progress = Progress(lines.append, every=3600.0)
    progress.cell_started(1, 1, "lora on digits, seed 0", epochs=5)
    record = {"epoch": 1, "train_loss": 1.0, "val_top1": 0.5, "train_seconds": 0.1}
    for epoch in range(1, 6):
        progress.epoch(record | {"epoch": epoch}, epochs=5)
    assert lines == ["[1/1] lora on digits, seed 0"]
    Progress(lines.append, every=0.0).epoch(record, epochs=5)
    assert lines[-1].startswith("  epoch 1/5  train loss 1.0000  val top-1 50.00%")


def test_a_terminal_gets_the_live_display_and_keeps_one_line_per_finished_run():
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=120)
    progress = for_console(console)
    assert isinstance(progress, LiveProgress)
    progress.sweep_started(2)
    progress.cell_started(1, 2, "lora on digits, seed 0 (abc)", epochs=3)
    progress.epoch({"epoch": 1, "train_loss": 1.0, "val_top1": 0.25, "train_seconds": 0.1}, epochs=3)
    progress.bars.refresh()
    drawn = screen.getvalue()
    assert "cells" in drawn and "0/2" in drawn and "val top-1 25.00%" in drawn
    progress.cell_finished("ok: test top-1 90.00%")
    progress.close()
    assert "[1/2] lora on digits, seed 0 (abc)  ok: test top-1 90.00%" in screen.getvalue()
    assert isinstance(for_console(Console(file=io.StringIO())), Progress)  # not a terminal: plain lines
    assert not isinstance(for_console(Console(file=io.StringIO())), LiveProgress)
