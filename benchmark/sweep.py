"""A sweep: the cells a `run` command asks for, checked before anything runs, then run one by one.

Each finished cell, successful or not, becomes a row on disk. Cells with a successful row are skipped
(resume), unless that row is of other code or libraries (stale: `ExecuteOptions.stale` and
benchmark/identity.py); a lock per cell keeps concurrent processes from running the same cell twice.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import signal
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

import torch

from benchmark import backbone as backbones
from benchmark import curves, data, identity, store, trained
from benchmark.config import RunConfig, make_options, make_train_params, split_overrides, strategy_class
from benchmark.distributed import Dist
from benchmark.errors import DiskFull, Diverged, UsageError
from benchmark.inputs import SharedTrunkOutputs
from benchmark.prepare import prepare_model
from benchmark.progress import Progress
from benchmark.provenance import device_name, provenance
from benchmark.runner import fresh_copy, run
from benchmark.training import seed_everything


@dataclasses.dataclass
class SweepSpec:
    """What the user asked for, before expansion into cells."""

    strategies: list[str]
    dataset: str
    model: str
    weights: str = "hub"  # "hub", "none" or a file path
    img_size: int | None = None
    model_args: dict[str, Any] = dataclasses.field(default_factory=dict)
    seeds: list[int] = dataclasses.field(default_factory=lambda: [0])
    train_flags: dict[str, Any] = dataclasses.field(default_factory=dict)  # only flags the user gave
    overrides: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)  # --set, per strategy
    precision: str = "fp32"
    device: str = "cpu"
    eval_batch_size: int = 512  # images per evaluation batch: speed only, not in the config hash
    val_fraction: float | None = None
    data_dir: Path = Path("data")
    results_dir: Path = Path("results")
    shard: tuple[int, int] = (0, 1)
    # --search: axis -> values ("lr", "lora.r"; "default" for each strategy's search_space()), see search.py
    search: dict[str, tuple] = dataclasses.field(default_factory=dict)


def expand(spec: SweepSpec) -> list[RunConfig]:
    """Every (strategy, seed) cell with its resolved options and hyper-parameters; this shard's share."""
    dataset = data.info(spec.dataset)
    backbones.check_model_name(spec.model)
    for name in list(spec.overrides):
        strategy_class(name) if name in spec.strategies else _not_in_sweep(name, spec.strategies)
    weights_sha = backbones.weights_fingerprint(spec.weights)
    val_fraction = dataset.default_val_fraction if spec.val_fraction is None else spec.val_fraction
    if not 0 < val_fraction < 1:
        raise UsageError(f"--val-fraction must be between 0 and 1 (exclusive); got {val_fraction}")
    cells = []
    for name in spec.strategies:
        strategy = strategy_class(name)
        option_values, train_values = split_overrides(name, spec.overrides.get(name, {}))
        options = make_options(name, option_values)
        train = make_train_params(name, spec.train_flags, train_values)
        pretrained = strategy.uses_pretrained and spec.weights != "none"
        for seed in spec.seeds:
            cells.append(
                RunConfig(
                    strategy=name,
                    options=options,
                    dataset=spec.dataset,
                    model=spec.model,
                    model_args=tuple(sorted(spec.model_args.items())),
                    weights=spec.weights if pretrained else "none",
                    weights_sha256=weights_sha if pretrained else "",
                    img_size=spec.img_size,
                    seed=seed,
                    train=train,
                    precision=spec.precision,
                    val_fraction=val_fraction,
                    device=spec.device,
                    eval_batch_size=spec.eval_batch_size,
                    data_dir=spec.data_dir,
                    results_dir=spec.results_dir,
                )
            )
    index, count = spec.shard
    return cells[index::count]


def _not_in_sweep(name: str, chosen: list[str]) -> None:
    strategy_class(name)  # an unknown name gets the registry's error
    raise UsageError(f"--set names strategy '{name}', which is not in --strategies ({', '.join(chosen)})")


def plan(cell: RunConfig) -> dict[str, Any]:
    """The cell with its parameter counts, from the architecture on the meta device: no data, no weights.

    Bad options are a UsageError; any other error in a strategy is shown in the plan and, when the
    cell runs, recorded as a failed row.
    """
    skeleton = backbones.create_skeleton(
        cell.model, data.info(cell.dataset).num_classes, cell.img_size, dict(cell.model_args)
    )
    item = {
        "strategy": cell.strategy,
        "dataset": cell.dataset,
        "model": cell.model,
        "seed": cell.seed,
        "options": dataclasses.asdict(cell.options),
        "weights": cell.weights,
        "train": dataclasses.asdict(cell.train),
        "config_hash": cell.config_hash,
    }
    try:
        counts = prepare_model(cell.strategy, cell.options, skeleton).counts
    except ValueError as error:
        raise UsageError(f"{cell.strategy}: {error}") from None
    except Exception as error:  # a bug in a strategy: the sweep goes on without it
        return item | {"error": f"{type(error).__name__}: {error}"}
    return item | {
        "trainable_params": counts.trainable,
        "total_params": counts.total,
        "trainable_params_excluding_head": counts.trainable_excluding_head,
        "head_params": counts.head,
    }


def identity_row(cell: RunConfig, splits: data.Splits, device: torch.device, dist: Dist) -> dict[str, Any]:
    return {
        "config_hash": cell.config_hash,
        "cell_hash": cell.cell_hash,
        "code_version": identity.code_version(cell.strategy),
        "strategy": cell.strategy,
        "strategy_options": json.dumps(dataclasses.asdict(cell.options), sort_keys=True),
        "dataset": cell.dataset,
        "data_source": splits.source,
        "data_verified": splits.verified,
        "n_train": data.train_count(splits, cell.train.train_size),
        "n_val": len(splits.val),
        "n_labelled": data.train_count(splits, cell.train.train_size) + len(splits.val),
        "n_test": len(splits.test),
        "num_classes": len(splits.class_names),
        "model": cell.model,
        "model_args": json.dumps(dict(cell.model_args), sort_keys=True),
        "pretrained": cell.pretrained,
        "img_size": cell.img_size,
        "seed": cell.seed,
        **dataclasses.asdict(cell.train),
        "eval_batch_size": cell.eval_batch_size,
        "precision": cell.precision,
        "tf32": device.type == "cuda" and torch.backends.cuda.matmul.allow_tf32,
        "val_fraction": cell.val_fraction,
        "device": str(device),
        "device_name": device_name(device),
        "world_size": dist.world_size,
        "config_json": cell.to_json(),
        "stage": "",  # a tuned sweep's rows say "search" or "final" instead (search.py)
        **provenance(),
    }


# --- execution ----------------------------------------------------------------------------------------


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


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
        if self.statuses["cancelled"]:
            return 130
        return 1 if self.statuses["failed"] or self.statuses["diverged"] else 0


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

    splits: data.Splits
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
    if not pending:
        return result
    # Preflight: data and weights load before anything is written, so bad input costs nothing.
    first = pending[0]
    if not dist.is_main:
        dist.barrier()  # rank 0 downloads and extracts first
    splits = data.load(first.dataset, first.data_dir, first.val_fraction, options.download).to(device)
    if dist.is_main:
        dist.barrier()
    for cell in pending:  # a train_size the data cannot give fails here, before anything is written
        data.train_count(splits, cell.train.train_size)
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
            if _run_claimed(cell, sweep) == "cancelled":
                break
    finally:
        progress.close()
        signal.signal(signal.SIGTERM, previous_handler)
    return result


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
    row = {"run_id": run_id, "started_at": _now(), **identity_row(cell, sweep.splits, sweep.device, dist)}
    row.update(sweep.tags.get(cell.config_hash, {}))
    outcome, status, error = None, "ok", ""
    # Curves for TensorBoard, W&B or MLflow (rank 0 only); the rows below stay the record.
    run_log = curves.open_run(sweep.options.log, cell.results_dir, run_id, row, sweep.progress, dist.is_main)

    def on_epoch(record: dict) -> None:
        sweep.progress.epoch(record, _epochs(cell))
        run_log.epoch(record)

    try:
        seed_everything(cell.seed)
        backbone = sweep.source.for_cell(cell)
        row.update(
            weights=backbone.weights, normalisation=backbone.normalisation, pos_embed=backbone.pos_embed
        )
        outcome = run(
            cell,
            sweep.splits,
            backbone,
            sweep.device,
            dist,
            compile_model=sweep.options.compile_model,
            shared_trunks=sweep.shared_trunks,
            on_epoch=on_epoch,
            log=sweep.progress,
        )
    except KeyboardInterrupt:
        status, error = "cancelled", "interrupted (Ctrl-C or SIGTERM)"
    except DiskFull:
        raise  # no row can be written either: the sweep stops with one line
    except Diverged as failure:
        status, error = "diverged", str(failure)
    except torch.cuda.OutOfMemoryError as failure:
        status, error = "failed", f"out of memory: {str(failure).splitlines()[0]}"
    except Exception as failure:  # any error in one cell is recorded, and the sweep goes on
        status, error = "failed", f"{type(failure).__name__}: {failure}"
        sweep.progress(traceback.format_exc().rstrip())
    row.update(status=status, error=error, finished_at=_now())
    row.setdefault("weights", cell.weights)
    if outcome is not None:
        row.update(outcome.row)
    if dist.is_main:  # only rank 0 writes
        if outcome is not None and sweep.options.keep_weights:
            row["weights_file"] = str(trained.save(cell, outcome, run_id))
        store.write_run(cell.results_dir, run_id, row, outcome.tables if outcome else {})
        if status in ("ok", "diverged"):
            store.checkpoint_path(cell.results_dir, cell.config_hash).unlink(missing_ok=True)
        if status in store.ANSWERS and cell.config_hash in sweep.replaced:
            why = "--force" if sweep.options.force else "--stale rerun: another code or library version"
            store.supersede(cell.results_dir, cell.config_hash, run_id, why)
    run_log.finish(row, outcome.tables["epochs"] if outcome else None)
    sweep.result.run_ids.append(run_id)
    if status == "failed" and dist.enabled:
        # The other processes may be waiting in a collective operation: end the group, and torchrun
        # stops every process, rather than leave them hanging.
        raise RuntimeError(f"cell {cell.config_hash} failed on rank {dist.rank}: {error}")
    if status == "ok":
        summary = f"ok: test top-1 {row['test_top1']:.2%}, val top-1 {row['best_val_top1']:.2%}"
    else:
        summary = f"{status}: {error}"
    sweep.progress.cell_finished(summary + f" ({row.get('train_seconds', 0.0):.1f} s training)")
    return status


def _epochs(cell: RunConfig) -> int | None:
    """The run's epochs, or None with --steps, whose last epoch may be partial."""
    return None if cell.train.steps else cell.train.epochs
