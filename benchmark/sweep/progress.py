"""What a sweep tells its user while it runs: a live display on a terminal, a few plain lines elsewhere.

A sweep reports five events: a message, the start of a sweep of N cells, the start of a cell, the end of an
epoch and the end of a cell. `Progress` prints them as plain lines, for a pipe, a CI log or a Slurm output
file: one line per cell at its start and one at its end, and an epoch line at most every `every` seconds
(every epoch with `verbose`). `LiveProgress` draws rich's live display on a terminal instead: the sweep's
position (cell i of n, elapsed, time left) and the current run's epoch bar with its latest validation top-1,
while one summary line per finished cell stays on screen above it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.progress import Progress as RichProgress

PLAIN_EPOCH_INTERVAL = 10.0  # seconds between two epoch lines when not verbose: a log stays short


def epoch_line(record: dict[str, Any], epochs: int | None) -> str:
    """One epoch as a line: `epochs` is None with --steps, whose last epoch may be partial."""
    of_epochs = "" if epochs is None else f"/{epochs}"
    return (
        f"  epoch {record['epoch']}{of_epochs}  train loss {record['train_loss']:.4f}  "
        f"val top-1 {record['val_top1']:.2%}  ({record['train_seconds']:.1f} s)"
    )


class Progress:
    """Plain lines through `write`; subclasses draw the same events differently."""

    def __init__(
        self, write: Callable[[str], None], verbose: bool = False, every: float = PLAIN_EPOCH_INTERVAL
    ) -> None:
        self.write, self.verbose, self.every = write, verbose, every
        self._last_epoch_line = 0.0  # time.monotonic() of the last epoch line printed

    def __call__(self, text: str) -> None:
        """A message that always shows (a skipped-cells count, a search decision, an error)."""
        self.write(text)

    def sweep_started(self, cells: int) -> None:
        """A sweep of `cells` cells begins (a tuned sweep has two: its search, then its seeds)."""

    def cell_started(self, number: int, cells: int, title: str, epochs: int | None) -> None:
        self.write(f"[{number}/{cells}] {title}")
        self._last_epoch_line = time.monotonic()

    def epoch(self, record: dict[str, Any], epochs: int | None) -> None:
        now = time.monotonic()
        if self.verbose or now - self._last_epoch_line >= self.every:
            self.write(epoch_line(record, epochs))
            self._last_epoch_line = now

    def cell_finished(self, summary: str) -> None:
        self.write(f"  {summary}")

    def close(self) -> None:
        """The sweep is over (or interrupted): leave the terminal as it was."""


class LiveProgress(Progress):
    """rich's live display: two bars under the finished cells' summary lines."""

    def __init__(self, console: Console, verbose: bool = False) -> None:
        super().__init__(lambda text: console.print(text, markup=False, highlight=False), verbose)
        self.bars = RichProgress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("left"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[note]}"),
            console=console,
            transient=True,  # the bars go when the sweep ends; the summary lines stay
        )
        self.sweep_bar = self.bars.add_task("sweep", total=1, note="", visible=False)
        self.run_bar = self.bars.add_task("run", total=1, note="", visible=False)
        self.title = ""

    def __call__(self, text: str) -> None:
        self.bars.console.print(text, markup=False, highlight=False)

    def sweep_started(self, cells: int) -> None:
        self.bars.start()
        self.bars.reset(self.sweep_bar, total=cells, description="cells", visible=True)

    def cell_started(self, number: int, cells: int, title: str, epochs: int | None) -> None:
        self.title = f"[{number}/{cells}] {title}"
        self.bars.update(self.sweep_bar, completed=number - 1)
        self.bars.reset(self.run_bar, total=epochs, description=title.split(" (")[0], note="", visible=True)

    def epoch(self, record: dict[str, Any], epochs: int | None) -> None:
        self.bars.update(self.run_bar, completed=record["epoch"], note=f"val top-1 {record['val_top1']:.2%}")
        if self.verbose:
            self(epoch_line(record, epochs))

    def cell_finished(self, summary: str) -> None:
        self(f"{self.title}  {summary}")
        self.bars.advance(self.sweep_bar)

    def close(self) -> None:
        self.bars.stop()


def for_console(console: Console, verbose: bool = False, enabled: bool = True) -> Progress:
    """Live bars on a terminal; plain lines when stderr is a pipe or a file; nothing on ranks other than 0."""
    if not enabled:
        return Progress(lambda text: None)
    if console.is_terminal:
        return LiveProgress(console, verbose)
    return Progress(lambda text: console.print(text, markup=False, highlight=False), verbose)
