"""Training curves where people look: TensorBoard event files (by default), Weights & Biases, MLflow.

The sweep opens one `RunLog` per run on rank 0 (`open_run`), feeds it each epoch's record as the runner
reports it, and closes it with the run's final row. Every sink gets the same: per epoch the training loss
and top-1, validation loss and top-1, learning rate and epoch time; at the end the row's main numbers
(test top-1, best validation top-1, costs), labelled by strategy, dataset, model and seed. TensorBoard
writes RESULTS_DIR/tb/<run_id>/, so that `tensorboard --logdir RESULTS_DIR/tb` compares the runs.

Nothing here changes the parquet rows, which stay the record: a sink that fails is named once and
dropped, and the run goes on.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmark.errors import UsageError
from benchmark.results.status import Status

SINKS = ("tensorboard", "wandb", "mlflow")
PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}  # what each imports
PROJECT = "vit-finetune-benchmark"  # the W&B project and MLflow experiment (WANDB_PROJECT overrides)
# Epoch record key -> tag. Tags group in TensorBoard by their prefix (train/, val/, time/).
EPOCH_TAGS = {
    "train_loss": "train/loss",
    "train_top1": "train/top1",
    "val_loss": "val/loss",
    "val_top1": "val/top1",
    "lr": "train/lr",
    "train_seconds": "time/epoch_train_seconds",
}
# The final row's main numbers, logged as final/<name> (fractions for top-1, seconds, parameters, bytes).
FINAL_KEYS = (
    "test_top1",
    "test_top5",
    "test_loss",
    "test_macro_f1",
    "best_val_top1",
    "best_val_epoch",
    "train_seconds",
    "eval_seconds",
    "trainable_params",
    "peak_memory_bytes",
)
LABELS = ("strategy", "dataset", "model", "seed", "stage", "search_point", "config_hash")


@dataclasses.dataclass(frozen=True)
class LogOptions:
    """Where a sweep's curves go: any of SINKS; none by default (the CLI's default is TensorBoard)."""

    sinks: tuple[str, ...] = ()
    mlflow_uri: str | None = None  # None: mlflow_uri(RESULTS_DIR), a SQLite file in the results folder


def options_from(log: str | None, mlflow_uri: str | None, say: Callable[[str], None]) -> LogOptions:
    """`--log` as LogOptions. Unset: TensorBoard if it is installed (else one line says it is off); a sink
    that was asked for and is not installed is a UsageError naming the `pip install`."""
    if log is None:
        if _installed("tensorboard"):
            sinks: tuple[str, ...] = ("tensorboard",)
        else:
            say("no TensorBoard curves: the tensorboard package is not installed (pip install tensorboard)")
            sinks = ()
    else:
        sinks = _parse(log)
    if mlflow_uri is not None and "mlflow" not in sinks:
        raise UsageError("--mlflow-uri goes with --log mlflow")
    for sink in sinks:
        if not _installed(PACKAGES[sink]):
            raise UsageError(
                f"--log {sink} needs the {PACKAGES[sink]} package: "
                f"pip install 'vit-finetune-benchmark[{sink}]' (or pip install {PACKAGES[sink]})"
            )
    return LogOptions(sinks, mlflow_uri)


def _parse(text: str) -> tuple[str, ...]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    if names == ["none"]:
        return ()
    for name in names:
        if name not in SINKS:
            raise UsageError(
                f"--log takes a comma-separated list of {', '.join(SINKS)}, or none; got '{name}'"
            )
    if not names:
        raise UsageError(f"--log needs a value: {', '.join(SINKS)}, or none")
    return tuple(dict.fromkeys(names))


def _installed(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


def labels(row: dict[str, Any]) -> dict[str, Any]:
    """What tells runs apart in the tools' tables: strategy, dataset, model, seed (and a search's point)."""
    return {key: row.get(key) for key in LABELS if row.get(key) not in (None, "")}


class RunLog:
    """One run's curves, sent to every open sink; a sink that raises is named once and dropped."""

    def __init__(self, sinks: list[Any], say: Callable[[str], None]) -> None:
        self.sinks, self.say = sinks, say
        self.epochs: set[int] = set()  # epochs already sent, so that finish() sends only the others

    def epoch(self, record: dict[str, Any]) -> None:
        self.epochs.add(int(record["epoch"]))
        self._each(lambda sink: sink.epoch(record))

    def finish(self, row: dict[str, Any], history: Any = None) -> None:
        """The final row's numbers; first, epochs that a resumed run did before this process (`history`,
        the epochs table) and so never reported."""
        if history is not None:
            for record in history.to_dict("records"):
                if int(record["epoch"]) not in self.epochs:
                    self.epoch(record)
        final = {key: float(row[key]) for key in FINAL_KEYS if _is_number(row.get(key))}
        step = int(row.get("epochs_completed") or max(self.epochs, default=0))
        self._each(lambda sink: sink.finish(final, step, row.get("status", ""), row.get("error", "")))
        self.sinks = []

    def _each(self, call: Callable[[Any], None]) -> None:
        for sink in list(self.sinks):
            try:
                call(sink)
            except Exception as error:  # curves are a view; the run and its row go on without this sink
                self.say(f"{sink.name} logging stopped for this run: {type(error).__name__}: {error}")
                self.sinks.remove(sink)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value  # not NaN


def open_run(
    options: LogOptions,
    results_dir: Path,
    run_id: str,
    row: dict[str, Any],
    say: Callable[[str], None],
    is_main: bool = True,
) -> RunLog:
    """A RunLog with a sink per `options.sinks` (none on ranks other than 0: only rank 0 logs)."""
    log = RunLog([], say)
    if not is_main:
        return log
    makers = {"tensorboard": TensorBoard, "wandb": Wandb, "mlflow": MLflow}
    for name in options.sinks:
        try:
            log.sinks.append(makers[name](Path(results_dir), run_id, labels(row), options))
        except Exception as error:
            say(f"{name} logging is off for run {run_id}: {type(error).__name__}: {error}")
    return log


def mlflow_uri(results_dir: Path) -> str:
    """The default MLflow store: a SQLite file in the results folder (absolute: workers may run elsewhere)."""
    return f"sqlite:///{Path(results_dir).absolute() / 'mlflow.db'}"


def tb_folder(results_dir: Path, run_id: str) -> Path:
    from benchmark.results import store  # pandas: not on the path of `--help` and usage errors

    return store.curves_path(results_dir, run_id)


class TensorBoard:
    """Event files in RESULTS_DIR/tb/<run_id>/: scalars per epoch, a text card and hparams for the labels."""

    name = "TensorBoard"

    def __init__(self, results_dir: Path, run_id: str, labels: dict[str, Any], options: LogOptions) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.labels = labels
        self.writer = SummaryWriter(log_dir=str(tb_folder(results_dir, run_id)))
        card = "\n".join(f"| {key} | {value} |" for key, value in {"run_id": run_id, **labels}.items())
        self.writer.add_text("run", "| label | value |\n|---|---|\n" + card, 0)
        self.writer.flush()

    def epoch(self, record: dict[str, Any]) -> None:
        for key, tag in EPOCH_TAGS.items():
            self.writer.add_scalar(tag, float(record[key]), int(record["epoch"]))
        self.writer.flush()  # an epoch of ViT-B takes minutes: flushing each one keeps the view live

    def finish(self, final: dict[str, float], step: int, status: str, error: str) -> None:
        from torch.utils.tensorboard.summary import hparams

        for key, value in final.items():
            self.writer.add_scalar(f"final/{key}", value, step)
        # The HParams tab: one line per run with its labels and final numbers, in this run's folder.
        params = {
            key: value if isinstance(value, (int, float)) else str(value)
            for key, value in self.labels.items()
        }
        for summary in hparams(params, {f"final/{key}": value for key, value in final.items()}):
            self.writer.file_writer.add_summary(summary)
        self.writer.add_text("status", f"{status} {error}".strip(), step)
        self.writer.close()


class Wandb:
    """A W&B run named by run id, its labels as config; offline with WANDB_MODE=offline (under
    RESULTS_DIR/wandb), to be synced later with `wandb sync`."""

    name = "W&B"

    def __init__(self, results_dir: Path, run_id: str, labels: dict[str, Any], options: LogOptions) -> None:
        import wandb

        results_dir.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", PROJECT),
            name=run_id,
            group=labels.get("dataset"),
            tags=[str(labels[key]) for key in ("strategy", "dataset") if key in labels],
            config={"run_id": run_id, **labels},
            dir=str(results_dir),
            reinit="finish_previous",
        )

    def epoch(self, record: dict[str, Any]) -> None:
        values = {tag: float(record[key]) for key, tag in EPOCH_TAGS.items()}
        self.run.log(values | {"epoch": int(record["epoch"])})

    def finish(self, final: dict[str, float], step: int, status: str, error: str) -> None:
        self.run.summary.update({f"final/{key}": value for key, value in final.items()} | {"status": status})
        self.run.finish(exit_code=0 if status == Status.OK else 1)


class MLflow:
    """An MLflow run named by run id under the experiment PROJECT, its labels as tags and parameters;
    the tracking URI is --mlflow-uri, by default a local SQLite store, RESULTS_DIR/mlflow.db (MLflow 3
    refuses its old file store, ./mlruns, unless MLFLOW_ALLOW_FILE_STORE=true)."""

    name = "MLflow"

    def __init__(self, results_dir: Path, run_id: str, labels: dict[str, Any], options: LogOptions) -> None:
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=options.mlflow_uri or mlflow_uri(results_dir))
        experiment = self._experiment(Path(results_dir).absolute() / "mlartifacts")
        tags = {key: str(value) for key, value in labels.items()}
        self.run_id = self.client.create_run(experiment, run_name=run_id, tags=tags).info.run_id
        for key, value in {"run_id": run_id, **labels}.items():
            self.client.log_param(self.run_id, key, str(value))

    def _experiment(self, artifacts: Path) -> str:
        found = self.client.get_experiment_by_name(PROJECT)
        if found is not None:
            return found.experiment_id
        try:
            return self.client.create_experiment(PROJECT, artifact_location=artifacts.as_uri())
        except Exception:  # another worker created it first
            return self.client.get_experiment_by_name(PROJECT).experiment_id

    def _log(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)  # MLflow timestamps are milliseconds
        metrics = [Metric(key, value, now, step) for key, value in values.items()]
        self.client.log_batch(self.run_id, metrics=metrics)

    def epoch(self, record: dict[str, Any]) -> None:
        self._log({tag: float(record[key]) for key, tag in EPOCH_TAGS.items()}, int(record["epoch"]))

    def finish(self, final: dict[str, float], step: int, status: str, error: str) -> None:
        self._log({f"final/{key}": value for key, value in final.items()}, step)
        self.client.set_tag(self.run_id, "status", status)
        self.client.set_terminated(self.run_id, "FINISHED" if status == Status.OK else "FAILED")


def describe(options: LogOptions, results_dir: Path) -> str:
    """Where this sweep's curves go, in one line ("" when nowhere)."""
    from benchmark.results import store  # pandas: not on the path of `--help` and usage errors

    where = {
        "tensorboard": f"tensorboard --logdir {store.curves_path(results_dir)}",
        "wandb": f"W&B project {os.environ.get('WANDB_PROJECT', PROJECT)}"
        + (" (offline: wandb sync)" if os.environ.get("WANDB_MODE") == "offline" else ""),
        "mlflow": f"mlflow ui --backend-store-uri {options.mlflow_uri or mlflow_uri(results_dir)}",
    }
    return "curves: " + "; ".join(where[sink] for sink in options.sinks) if options.sinks else ""
