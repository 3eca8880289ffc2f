"""Workers that share one results folder take the next unclaimed cell (pull), not a fixed share (push).

Every worker of a launcher (launch.py) runs the whole cell list; the per-cell claims (store.claim) make each
take the next cell nobody holds. Cells differ in cost by more than 10x, so a fixed `--shard` would leave
workers idle at the end; pulling keeps them busy until the list is done. Two rules on top of engine.execute:

- After its pass, a worker runs again over the cells that were held by another process when it came to
  them, as long as its last pass ran something: a worker that was killed in the middle of a cell has let go
  of its claim, and the cell is finished here from its checkpoint. When a pass runs nothing, the remaining
  cells are held by live workers and this one leaves (it does not hold a GPU idle waiting for them).
- A tuned sweep's final stage needs every search row. A worker that finds search points held by another
  worker waits for them, trying again every POLL_SECONDS (and running any whose holder died), because the
  final stage has more cells than workers and every worker is needed for it.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import torch

from benchmark.config import RunConfig
from benchmark.results.status import Status
from benchmark.sweep import engine
from benchmark.sweep.progress import Progress
from benchmark.train.distributed import Dist

Tags = dict[str, dict[str, Any]] | None  # config hash -> extra row columns, as engine.execute takes them

POLL_SECONDS = 10.0  # between two looks at search points that other workers hold: a look reads the claims


def execute(
    cells: list[RunConfig],
    device: torch.device,
    dist: Dist,
    progress: Progress,
    options: engine.ExecuteOptions,
    tags: Tags = None,
    wait: bool = False,
) -> engine.SweepResult:
    """engine.execute, then again over the cells others held: while the last pass ran something, or with
    `wait` (search points, which the final stage needs), until no cell is held, looking every POLL_SECONDS."""
    total = last = engine.execute(cells, device, dist, progress, options, tags)
    while last.left and not last.statuses[Status.CANCELLED]:
        if wait:
            progress(
                f"waiting for {len(last.left)} search run(s) that other workers hold "
                f"(looking again every {POLL_SECONDS:g} s)"
            )
            time.sleep(POLL_SECONDS)
        elif not sum(last.statuses.values()):
            break  # the cells left are held by live workers: this one leaves
        last = engine.execute(_only(cells, last.left), device, dist, progress, options, tags)
        total = _then(total, last)
    return total


def _only(cells: list[RunConfig], hashes: list[str]) -> list[RunConfig]:
    wanted = set(hashes)
    return [cell for cell in cells if cell.config_hash in wanted]


def _then(first: engine.SweepResult, later: engine.SweepResult) -> engine.SweepResult:
    """Two passes over one list as one result: a cell that was busy and is now done counts as skipped;
    only the last pass's busy cells are still left to others."""
    return engine.SweepResult(
        Counter(first.statuses) + later.statuses,
        first.skipped + later.skipped,
        later.busy,
        first.run_ids + later.run_ids,
        later.left,
    )
