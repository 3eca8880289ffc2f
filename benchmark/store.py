"""Results on disk: one parquet file per run and table, written atomically; read back as DataFrames.

Layout under the results folder (each table readable with `pandas.read_parquet(folder / table)`):
  runs/<run_id>.parquet     one row per run: the cell, its outcomes and costs, provenance
  epochs/<run_id>.parquet   per-epoch history
  classes/<run_id>.parquet  per-class test accuracy
  confusion/<run_id>.parquet  test confusion matrix, long format (true, predicted, count)
  claims/<config_hash>.lock   held (flock) by the process running that cell
  checkpoints/<config_hash>.pt  the unfinished cell's last end-of-epoch state
Temporary files start with '.', which pandas and pyarrow skip, and are renamed into place.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import os
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa

from benchmark import columns
from benchmark.errors import UsageError

SCHEMAS = {table: columns.schema(table) for table in columns.TABLES}
TABLES = tuple(SCHEMAS)


def new_run_id(strategy: str, config_hash: str) -> str:
    """UTC start time, strategy, and the config hash's first 8 characters, by which a cell's runs are found."""
    started = datetime.datetime.now(datetime.timezone.utc)
    return f"{started:%Y%m%dT%H%M%S}-{strategy}-{config_hash[:8]}"


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
        raise ValueError(f"columns {sorted(unknown)} are not in the {table} schema (benchmark/store.py)")
    frame = frame.reindex(columns=schema.names)
    frame = frame.astype({name: object for name in schema.names if frame[name].isna().all()})
    return pa.Table.from_pandas(frame, schema=schema, preserve_index=False)


def write_atomic(frame: pd.DataFrame, path: Path, table: str) -> None:
    """Write to a hidden temporary name in the same folder, flush to disk, then rename into place."""
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.parent / f".tmp-{uuid.uuid4().hex}-{path.name}"
    pq.write_table(to_arrow(frame, table), temporary)
    with open(temporary, "rb") as file:
        os.fsync(file.fileno())
    os.replace(temporary, path)


def write_run(results_dir: Path, run_id: str, row: dict, tables: dict[str, pd.DataFrame]) -> None:
    """The detail tables first, the run row last: a row on disk means its details are there too."""
    for name, frame in tables.items():
        write_atomic(frame.assign(run_id=run_id), results_dir / name / f"{run_id}.parquet", name)
    write_atomic(pd.DataFrame([row]), results_dir / "runs" / f"{run_id}.parquet", "runs")


def _ok_rows_of_cell(results_dir: Path, config_hash: str) -> Iterator[tuple[Path, pd.DataFrame]]:
    """The cell's successful run files: only the few whose run id ends in the hash's prefix are opened."""
    for path in sorted((Path(results_dir) / "runs").glob(_runs_of_cell_glob(config_hash))):
        try:
            row = pd.read_parquet(path)
        except Exception:  # not a run of ours; read() warns about such files
            continue
        if (
            {"config_hash", "status"} <= set(row.columns)
            and (row["config_hash"] == config_hash).all()
            and (row["status"] == "ok").all()
        ):
            yield path, row


def has_ok_row(results_dir: Path, config_hash: str) -> bool:
    return any(True for _ in _ok_rows_of_cell(results_dir, config_hash))


def supersede(results_dir: Path, config_hash: str, newer_run_id: str) -> int:
    """After a forced rerun succeeds, mark the cell's older ok rows `superseded`, so that a cell never
    has two successful rows and nothing is deleted. Returns how many rows were marked."""
    older = [
        (path, row) for path, row in _ok_rows_of_cell(results_dir, config_hash) if path.stem != newer_run_id
    ]
    for path, row in older:
        row["status"], row["error"] = "superseded", f"superseded by {newer_run_id} (--force)"
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
    return every[[*current.columns, *extra]]


def completed_hashes(results_dir: Path) -> set[str]:
    """Config hashes of cells that already have a successful run."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        runs = read(results_dir, "runs")
    if runs.empty:
        return set()
    return set(runs.loc[runs["status"] == "ok", "config_hash"])


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


def checkpoint_path(results_dir: Path, config_hash: str) -> Path:
    return results_dir / "checkpoints" / f"{config_hash}.pt"
