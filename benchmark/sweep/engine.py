"""A sweep: the cells a `run` command asks for, checked before anything runs, then run one by one.

Each finished cell, successful or not, becomes a row on disk. Cells with a successful row are skipped
(resume), unless that row is of other code or libraries (stale: `ExecuteOptions.stale` and
benchmark/results/identity.py); a lock per cell keeps concurrent processes from running the same cell twice.
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

import torch

from benchmark.config import RunConfig
from benchmark.data import datasets
from benchmark.errors import DiskFull, Diverged, UsageError
from benchmark.kept import trained
from benchmark.results import curves, identity, store
from benchmark.results.status import ANSWERS, Status
from benchmark.sweep import row as rows
from benchmark.sweep.progress import Progress
from benchmark.train.distributed import Dist
from benchmark.train.inputs import SharedTrunkOutputs
from benchmark.train.runner import fresh_copy, run
from benchmark.train.step import seed_everything
from benchmark.weights import backbone as backbones


def _raise_keyboard_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


class BackboneSource:
    """Pretrained backbones are loaded once per sweep and copied per cell; random ones are made per seed."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self._pretrained: dict[tuple, backbones.Backbone] = {}

    def key(self, cell: RunConfig) -> tuple:
        return cell.model, cell.weights, cell.img_size, cell.model_args

    def preload(self, cell: RunConfig) -> None:
        if cell.pretrained and self.key(cell) not in self._pretrained:
            self._pretrained[self.key(cell)] = backbones.create(
                cell.model, self.num_classes, cell.weights, cell.img_size, dict(cell.model_args)
            )

    def for_cell(self, cell: RunConfig) -> backbones.Backbone:
        if cell.pretrained:
            return fresh_copy(self._pretrained[self.key(cell)])
        return backbones.create(cell.model, self.num_classes, "none", cell.img_size, dict(cell.model_args))


@dataclasses.dataclass
class SweepResult:
    statuses: Counter
    skipped: int = 0
    busy: int = 0
    run_ids: list[str] = dataclasses.field(default_factory=list)
    left: list[str] = dataclasses.field(default_factory=list)  # config hashes of cells others held

    def merge(self, other: SweepResult) -> SweepResult:
        """Both stages of a tuned sweep counted together."""
        return SweepResult(
            self.statuses + other.statuses,
            self.skipped + other.skipped,
            self.busy + other.busy,
            self.run_ids + other.run_ids,
            self.left + other.left,
        )

    @property
    def exit_code(self) -> int:
        if self.statuses[Status.CANCELLED]:
            return 130
        return 1 if self.statuses[Status.FAILED] or self.statuses[Status.DIVERGED] else 0


@dataclasses.dataclass(frozen=True)
class ExecuteOptions:
    force: bool = False  # rerun cells that already have an ok row
    stale: str = "refuse"  # cells answered by other code or libraries: refuse, rerun or keep (identity.py)
    keep_weights: bool = False  # save trained parameters under results/weights
    download: bool = True  # download a missing dataset
    compile_model: bool = False  # torch.compile the trained module
    log: curves.LogOptions = curves.LogOptions()  # where curves go besides the rows (none by default)
    pull: bool = False  # a launcher's worker: revisit cells others held, wait for a search (pull.py)


# Frozen trunks' outputs, shared by every sweep of this process (a tuned sweep's search and final stages,
# an experiment file's datasets): the key covers the trunk's tensors, the preprocessing and the images.
SHARED_TRUNKS = SharedTrunkOutputs()


@dataclasses.dataclass
class _Sweep:
    """What every cell of one sweep shares."""

    splits: datasets.Splits
    source: BackboneSource
    device: torch.device
    dist: Dist
    progress: Progress
    options: ExecuteOptions
    result: SweepResult
    shared_trunks: SharedTrunkOutputs = dataclasses.field(default_factory=lambda: SHARED_TRUNKS)
    # config_hash -> extra row columns (a tuned sweep's stage and point), see search.py
    tags: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    # with --force or a stale cell rerun: config_hash -> the run ids of the answers there were when the
    # sweep started, which the new answer supersedes
    replaced: dict[str, set[str]] = dataclasses.field(default_factory=dict)


def execute(
    cells: list[RunConfig],
    device: torch.device,
    dist: Dist,
    progress: Progress,
    options: ExecuteOptions | None = None,
    tags: dict[str, dict[str, Any]] | None = None,
) -> SweepResult:
    """Run the cells that have no successful row yet; every cell that starts ends as a row on disk.

    `tags` adds columns to the rows of some cells, by config hash (not part of the hash).
    """
    options = options or ExecuteOptions()
    result = SweepResult(Counter())
    if not cells:  # e.g. a shard with no share of this stage
        return result
    results_dir = cells[0].results_dir
    pending, replaced = _pending(cells, dist, progress, options, result)
    if not pending:
        return result
    # Preflight: data and weights load before anything is written, so bad input costs nothing.
    first = pending[0]
    if not dist.is_main:
        dist.barrier()  # rank 0 downloads and extracts first
    splits = datasets.load(first.dataset, first.data_dir, first.val_fraction, options.download).to(device)
    if dist.is_main:
        dist.barrier()
    for cell in pending:  # a train_size the data cannot give fails here, before anything is written
        datasets.train_count(splits, cell.train.train_size)
    source = BackboneSource(len(splits.class_names))
    for cell in pending:
        source.preload(cell)
    progress(
        f"{len(pending)} cell(s) to run on {device} ({first.precision}), world size {dist.world_size}; "
        f"results in {results_dir}"
    )
    sweep = _Sweep(
        splits, source, device, dist, progress, options, result, tags=tags or {}, replaced=replaced
    )
    previous_handler = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)  # schedulers send SIGTERM
    progress.sweep_started(len(pending))
    try:
        for number, cell in enumerate(pending, 1):
            tag = sweep.tags.get(cell.config_hash, {})
            stage = f", {tag['stage']} {tag['search_point']}" if tag else ""
            title = f"{cell.strategy} on {cell.dataset}, seed {cell.seed}{stage} ({cell.config_hash})"
            progress.cell_started(number, len(pending), title, _epochs(cell))
            if _run_claimed(cell, sweep) == Status.CANCELLED:
                break
    finally:
        progress.close()
        signal.signal(signal.SIGTERM, previous_handler)
    return result


def _pending(
    cells: list[RunConfig], dist: Dist, progress: Progress, options: ExecuteOptions, result: SweepResult
) -> tuple[list[RunConfig], dict[str, set]]:
    """The cells to run, and per cell to rerun (--force, --stale rerun) the answers it will replace; says
    what it skips. Stale answers with --stale refuse raise a UsageError before anything is written."""
    results_dir = cells[0].results_dir
    done, stale = dist.broadcast(_done(cells, results_dir, options) if dist.is_main else None)
    if stale and options.stale == "refuse":  # every process answers alike, before anything is written
        raise UsageError(identity.refusal(stale))
    pending = [cell for cell in cells if cell.config_hash not in done]
    # With --force, the answers there now are the ones to replace; an answer that appears later was made
    # by another process given --force at the same time, and this one does not train the cell again.
    replaced = {
        cell.config_hash: store.answer_run_ids(results_dir, cell.config_hash) if dist.is_main else set()
        for cell in pending
        if options.force or cell.config_hash in stale
    }
    result.skipped = len(cells) - len(pending)
    if result.skipped:
        progress(f"skipping {result.skipped} cell(s) already done in {results_dir} (--force reruns them)")
    if stale:
        verb = "training again" if options.stale == "rerun" else "keeping as done"
        progress(f"{verb} {len(stale)} cell(s) whose results are of other code or libraries (--stale)")
    return pending, replaced


def _done(cells: list[RunConfig], results_dir: Path, options: ExecuteOptions) -> tuple[set, dict]:
    """The config hashes to skip, and the stale ones among the answered (hash -> why): skipped with
    `--stale keep`, not with `rerun`."""
    if options.force:
        return set(), {}
    answers = store.answers(results_dir)
    done = set() if answers.empty else set(answers["config_hash"])
    stale = identity.stale_answers(answers, [cell for cell in cells if cell.config_hash in done])
    return (done - set(stale) if options.stale == "rerun" else done), stale


def refuse_stale(cells: list[RunConfig], options: ExecuteOptions) -> None:
    """`--stale refuse` answered at once (a launcher's, before it submits workers): a UsageError if any
    cell's results are of other code or libraries."""
    if cells and options.stale == "refuse":
        _, stale = _done(cells, cells[0].results_dir, options)
        if stale:
            raise UsageError(identity.refusal(stale))


def _run_claimed(cell: RunConfig, sweep: _Sweep) -> str | None:
    dist = sweep.dist
    with store.claim(cell.results_dir, cell.config_hash) if dist.is_main else _held() as claimed:
        claimed = dist.broadcast(claimed)
        already = dist.broadcast(
            bool(
                store.answer_run_ids(cell.results_dir, cell.config_hash)
                - sweep.replaced.get(cell.config_hash, set())
            )
            if dist.is_main and claimed
            else False
        )
        if not claimed or already:
            sweep.progress.cell_finished("another process is running or has finished this cell; moving on")
            sweep.result.busy += 1
            if not claimed:  # held by another process: a launcher's worker may come back (pull.py)
                sweep.result.left.append(cell.config_hash)
            return None
        status = _run_one(cell, sweep)
        sweep.result.statuses[status] += 1
        return status


@contextlib.contextmanager
def _held():
    """Ranks other than 0 do not claim; rank 0's claim is broadcast to them."""
    yield True


def _run_one(cell: RunConfig, sweep: _Sweep) -> str:
    dist = sweep.dist
    run_id = store.new_run_id(cell.strategy, cell.config_hash)
    row = rows.start(cell, sweep.splits, sweep.device, dist, run_id, sweep.tags.get(cell.config_hash, {}))
    # Curves for TensorBoard, W&B or MLflow (rank 0 only); the rows below stay the record.
    run_log = curves.open_run(sweep.options.log, cell.results_dir, run_id, row, sweep.progress, dist.is_main)
    outcome, status, error = _train(cell, sweep, row, run_log)
    rows.finish(row, cell, status, error, outcome)
    if dist.is_main:  # only rank 0 writes
        _write(cell, sweep, row, outcome)
    run_log.finish(row, outcome.tables["epochs"] if outcome else None)
    sweep.result.run_ids.append(run_id)
    if status == Status.FAILED and dist.enabled:
        # The other processes may be waiting in a collective operation: end the group, and torchrun
        # stops every process, rather than leave them hanging.
        raise RuntimeError(f"cell {cell.config_hash} failed on rank {dist.rank}: {error}")
    if status == Status.OK:
        summary = f"ok: test top-1 {row['test_top1']:.2%}, val top-1 {row['best_val_top1']:.2%}"
    else:
        summary = f"{status}: {error}"
    sweep.progress.cell_finished(summary + f" ({row.get('train_seconds', 0.0):.1f} s training)")
    return status


def _train(cell: RunConfig, sweep: _Sweep, row: dict[str, Any], run_log) -> tuple[Any, str, str]:
    """(outcome or None, status, error): the cell trained, any failure of its own recorded, not raised."""

    def on_epoch(record: dict) -> None:
        sweep.progress.epoch(record, _epochs(cell))
        run_log.epoch(record)

    try:
        seed_everything(cell.seed)
        backbone = sweep.source.for_cell(cell)
        row.update(rows.backbone_columns(backbone))
        outcome = run(
            cell,
            sweep.splits,
            backbone,
            sweep.device,
            store.checkpoint_path(cell.results_dir, cell.config_hash),
            sweep.dist,
            compile_model=sweep.options.compile_model,
            shared_trunks=sweep.shared_trunks,
            on_epoch=on_epoch,
            log=sweep.progress,
        )
        return outcome, Status.OK, ""
    except KeyboardInterrupt:
        return None, Status.CANCELLED, "interrupted (Ctrl-C or SIGTERM)"
    except DiskFull:
        raise  # no row can be written either: the sweep stops with one line
    except Diverged as failure:
        return None, Status.DIVERGED, str(failure)
    except torch.cuda.OutOfMemoryError as failure:
        return None, Status.FAILED, f"out of memory: {str(failure).splitlines()[0]}"
    except Exception as failure:  # any error in one cell is recorded, and the sweep goes on
        sweep.progress(traceback.format_exc().rstrip())
        return None, Status.FAILED, f"{type(failure).__name__}: {failure}"


def _write(cell: RunConfig, sweep: _Sweep, row: dict[str, Any], outcome: Any) -> None:
    """The row and its tables on disk (and the kept weights); a finished cell's checkpoint removed; the
    answers it replaces (--force, --stale rerun) marked superseded."""
    run_id, status = row["run_id"], row["status"]
    if outcome is not None and sweep.options.keep_weights:
        row["weights_file"] = str(trained.save(cell, outcome, run_id))
    store.write_run(cell.results_dir, run_id, row, outcome.tables if outcome else {})
    if status in ANSWERS:
        store.checkpoint_path(cell.results_dir, cell.config_hash).unlink(missing_ok=True)
    if status in ANSWERS and cell.config_hash in sweep.replaced:
        why = "--force" if sweep.options.force else "--stale rerun: another code or library version"
        store.supersede(cell.results_dir, cell.config_hash, run_id, why)


def _epochs(cell: RunConfig) -> int | None:
    """The run's epochs, or None with --steps, whose last epoch may be partial."""
    return None if cell.train.steps else cell.train.epochs
