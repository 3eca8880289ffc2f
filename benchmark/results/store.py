"""Results on disk: one parquet file per run and table, written atomically; read back as DataFrames.

Layout under the results folder (each table readable with `pandas.read_parquet(folder / table)`):
  runs/<run_id>.parquet     one row per run: the cell, its outcomes and costs, provenance
  epochs/<run_id>.parquet   per-epoch history
  classes/<run_id>.parquet  per-class test accuracy
  confusion/<run_id>.parquet  test confusion matrix, long format (true, predicted, count)
  claims/<config_hash>.lock   held (flock) by the process running that cell
  checkpoints/<config_hash>.pt  the unfinished cell's last end-of-epoch state
Every file is written by `write_file`: to a temporary name starting with '.' (which pandas, pyarrow and
`read` skip), flushed to disk, then renamed into place; a full disk is one DiskFull error and no file.
`read` answers each cell once: detail rows of a run without a run row (a process killed between the two)
are left out, and of two `ok` rows of one cell (a `--force` rerun killed before it marked the older one)
the newer counts and the older reads as superseded.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import os
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import pandas as pd
import pyarrow as pa

from benchmark.errors import DiskFull, UsageError
from benchmark.results import columns
from benchmark.results.status import ANSWERS, Status

SCHEMAS = {table: columns.schema(table) for table in columns.TABLES}
TABLES = tuple(SCHEMAS)
DETAIL_TABLES = ("epochs", "classes", "confusion")  # keyed by run_id; a row only counts with its run's row


def new_run_id(strategy: str, config_hash: str) -> str:
    """UTC start time to the microsecond (two runs of one cell within a second, a quick cell and its --force
    rerun, must not share a file), strategy, and the config hash's first 8 characters, by which a cell's runs
    are found."""
    started = datetime.datetime.now(datetime.timezone.utc)
    return f"{started:%Y%m%dT%H%M%S.%f}-{strategy}-{config_hash[:8]}"


def _runs_of_cell_glob(config_hash: str) -> str:
    return f"[!.]*-{config_hash[:8]}.parquet"


def check_writable(results_dir: Path) -> None:
    """Fail early if results could not be written, without creating anything."""
    existing = Path(results_dir).absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(
            f"results folder {results_dir} is not writable ({existing} does not allow writing); "
            "pass --results-dir with a writable folder"
        )


def to_arrow(frame: pd.DataFrame, table: str) -> pa.Table:
    """The frame in the table's schema: absent columns become nulls, unknown columns are an error."""
    schema = SCHEMAS[table]
    unknown = set(frame.columns) - set(schema.names)
    if unknown:
        raise ValueError(
            f"columns {sorted(unknown)} are not in the {table} schema (benchmark/results/store.py)"
        )
    frame = frame.reindex(columns=schema.names)
    frame = frame.astype({name: object for name in schema.names if frame[name].isna().all()})
    return pa.Table.from_pandas(frame, schema=schema, preserve_index=False)


def write_file(path: Path, write: Callable[[BinaryIO], None]) -> Path:
    """The one way files are written: `write` fills a hidden temporary file in the same folder, which is
    flushed to disk and renamed into place, so a reader sees the old file or the new one, never a part.
    On any failure the temporary file is removed; a full disk raises DiskFull."""
    path = Path(path)
    temporary = path.parent / f".tmp-{uuid.uuid4().hex}-{path.name}"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(temporary, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        temporary.unlink(missing_ok=True)
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFull(f"disk full: could not write {path}; free some space and run again") from None
        raise
    return path


def write_atomic(frame: pd.DataFrame, path: Path, table: str) -> None:
    """One table's rows as a parquet file, through `write_file`."""
    import pyarrow.parquet as pq

    arrow = to_arrow(frame, table)
    write_file(path, lambda file: pq.write_table(arrow, file))


def write_run(results_dir: Path, run_id: str, row: dict, tables: dict[str, pd.DataFrame]) -> None:
    """The detail tables first, the run row last: a row on disk means its details are there too. If the
    row cannot be written, the details written for it are taken back."""
    written = []
    try:
        for name, frame in tables.items():
            path = results_dir / name / f"{run_id}.parquet"
            write_atomic(frame.assign(run_id=run_id), path, name)
            written.append(path)
        write_atomic(pd.DataFrame([row]), results_dir / "runs" / f"{run_id}.parquet", "runs")
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise


def _rows_of_cell(
    results_dir: Path, config_hash: str, statuses: tuple[str, ...]
) -> Iterator[tuple[Path, pd.DataFrame]]:
    """The cell's run files with one of `statuses`: only the few whose run id ends in the hash's prefix
    are opened."""
    for path in sorted((Path(results_dir) / "runs").glob(_runs_of_cell_glob(config_hash))):
        try:
            row = pd.read_parquet(path)
        except Exception:  # not a run of ours; read() warns about such files
            continue
        if (
            {"config_hash", "status"} <= set(row.columns)
            and (row["config_hash"] == config_hash).all()
            and row["status"].isin(statuses).all()
        ):
            yield path, row


def answer_run_ids(results_dir: Path, config_hash: str) -> set[str]:
    """The run ids of the cell's answers (ok or diverged rows)."""
    return {path.stem for path, _ in _rows_of_cell(results_dir, config_hash, ANSWERS)}


def supersede(results_dir: Path, config_hash: str, newer_run_id: str, why: str = "--force") -> int:
    """After a forced rerun (or the rerun of a stale cell) answers, mark the cell's older answers
    `superseded`, so that a cell never has two answers and nothing is deleted. Returns how many rows were
    marked."""
    older = [
        (path, row)
        for path, row in _rows_of_cell(results_dir, config_hash, ANSWERS)
        if path.stem != newer_run_id
    ]
    for path, row in older:
        row["status"], row["error"] = Status.SUPERSEDED, f"superseded by {newer_run_id} ({why})"
        write_atomic(row, path, "runs")
    return len(older)


def read(results_dir: Path | str, table: str = "runs") -> pd.DataFrame:
    """Every file of one table, aligned to the current schema: a column an older file lacks is null in its
    rows, and columns that only older files have are kept too. A file that is not a readable results file
    of this table is named in a warning and skipped."""
    frames = []
    for path in sorted((Path(results_dir) / table).glob("*")):
        if path.name.startswith(".") or path.is_dir():
            continue
        try:
            frame = pd.read_parquet(path)
        except Exception as error:  # pyarrow raises several types for foreign or damaged files
            warnings.warn(
                f"skipping {path}: not a readable results file ({type(error).__name__})", stacklevel=2
            )
            continue
        missing = columns.required(table) - set(frame.columns)
        if missing:
            warnings.warn(f"skipping {path}: lacks the columns {', '.join(sorted(missing))}", stacklevel=2)
            continue
        frames.append(frame)
    if not frames:
        return pd.DataFrame()
    current = SCHEMAS[table].empty_table().to_pandas()
    every = pd.concat([current, *frames], ignore_index=True)
    extra = [name for name in every.columns if name not in current.columns]
    every = every[[*current.columns, *extra]]
    if table == "runs":
        return _one_ok_row_per_cell(every)
    if table in DETAIL_TABLES:  # rows of a run killed before its run row was written are no answer
        return every[every["run_id"].isin(_run_ids(results_dir))].reset_index(drop=True)
    return every


def _run_ids(results_dir: Path | str) -> set[str]:
    return {path.stem for path in (Path(results_dir) / "runs").glob("[!.]*.parquet")}


def _one_ok_row_per_cell(runs: pd.DataFrame) -> pd.DataFrame:
    """Of several ok rows of one cell (a --force rerun killed before it marked the older one), the
    newest (by run id: start time first) stays ok; the others read as superseded by it."""
    ok = runs[runs["status"] == Status.OK].sort_values("run_id")
    newest = ok.groupby("config_hash")["run_id"].transform("last")
    older = newest[newest != ok["run_id"]]
    if older.empty:
        return runs
    runs = runs.copy()
    runs.loc[older.index, "status"] = Status.SUPERSEDED.value
    runs.loc[older.index, "error"] = "superseded by " + older + " (--force)"
    return runs


def answers(results_dir: Path) -> pd.DataFrame:
    """The rows that answer their cell: ok or diverged (unreadable files skipped without a word)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        runs = read(results_dir, "runs")
    return runs if runs.empty else runs[runs["status"].isin(ANSWERS)]


def completed_hashes(results_dir: Path) -> set[str]:
    """Config hashes of cells that already have an answer: an ok row, or a diverged one."""
    done = answers(results_dir)
    return set() if done.empty else set(done["config_hash"])


@contextlib.contextmanager
def claim(results_dir: Path, config_hash: str) -> Iterator[bool]:
    """Hold an exclusive lock on a cell while it runs. Yields False if another process holds it.

    The kernel releases the lock when the holder dies, SIGKILL included, so no claim goes stale.
    """
    folder = results_dir / "claims"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{config_hash}.lock", "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --- every path of a results folder -----------------------------------------------------------------


def checkpoint_path(results_dir: Path, config_hash: str) -> Path:
    """An unfinished cell's last end-of-epoch state."""
    return Path(results_dir) / "checkpoints" / f"{config_hash}.pt"


def run_path(results_dir: Path, run_id: str) -> Path:
    """A run's row (one parquet file of the `runs` table)."""
    return Path(results_dir) / "runs" / f"{run_id}.parquet"


def speed_path(results_dir: Path, speed_id: str) -> Path:
    """One `speed` invocation's rows."""
    return Path(results_dir) / "speed" / f"{speed_id}.parquet"


def weights_path(results_dir: Path, run_id_or_file: str) -> Path:
    """A kept run's weights (`--keep-weights`), by run id or by the file name a row records: always in this
    folder, never where a row's path points (a copied folder, or a planted path)."""
    name = Path(run_id_or_file).name
    return Path(results_dir) / "weights" / (name if name.endswith(".safetensors") else f"{name}.safetensors")


def experiment_path(results_dir: Path, digest: str) -> Path:
    """A sweep's resolved configuration (`run --config` reruns it)."""
    return Path(results_dir) / "experiments" / f"{digest}.yaml"


def curves_path(results_dir: Path, run_id: str | None = None) -> Path:
    """TensorBoard's folder for the results (`tensorboard --logdir`), or one run's under it."""
    root = Path(results_dir) / "tb"
    return root / run_id if run_id else root


def launcher_path(results_dir: Path) -> Path:
    """submitit's logs and pickles of the workers a launcher started."""
    return (Path.cwd() / results_dir / "launcher").resolve()


def report_path(results_dir: Path) -> Path:
    """The report's default folder."""
    return Path(results_dir) / "report"


def rewrite_run(results_dir: Path, run_id: str, values: dict) -> None:
    """Set columns of one run's row in place (atomically): the only rewrite of a row besides `supersede`."""
    path = run_path(results_dir, run_id)
    row = pd.read_parquet(path)
    for key, value in values.items():
        row[key] = value
    write_atomic(row, path, "runs")
