"""Curves where people look: every run's epochs in TensorBoard event files (by default), W&B offline and
MLflow with a local store on request; the parquet rows stay the same."""

from __future__ import annotations

import importlib.util
import json
import struct
from pathlib import Path

import pandas as pd
import pytest

from benchmark.results import store
from tests.helpers import run_cli, tiny_run


def test_log_none_writes_no_curves_and_the_rows_are_the_same(tmp_path):
    argv = [*tiny_run("linear", epochs=2), "--data-dir", str(tmp_path / "data")]
    logged, plain = tmp_path / "logged", tmp_path / "plain"
    logged.mkdir(), plain.mkdir()
    assert run_cli(*argv, cwd=logged).returncode == 0
    assert run_cli(*argv, "--log", "none", cwd=plain).returncode == 0
    assert list((logged / "results" / "tb").iterdir()) and not (plain / "results" / "tb").exists()
    with_curves, without = store.read(logged / "results"), store.read(plain / "results")
    assert list(with_curves.columns) == list(without.columns)
    for column in ("config_hash", "test_top1", "test_loss", "best_val_top1", "epochs_completed"):
        assert with_curves.loc[0, column] == without.loc[0, column]


def test_bad_log_value_is_one_line_exit_2_and_writes_nothing(tmp_path):
    for argv in (["--log", "nope"], ["--mlflow-uri", "file:/tmp/x"]):
        result = run_cli(*tiny_run("linear", epochs=1), *argv, cwd=tmp_path)
        assert (
            result.returncode == 2
            and result.stderr.startswith("error: --")
            and result.stderr.count("\n") == 1
        )
    assert not list(tmp_path.iterdir())


def wandb_records(run_file: Path) -> list:
    """The records of an offline W&B run file: a 7-byte header, then LevelDB-log blocks of 32 KiB whose
    records (7-byte header: checksum, length, type) hold protobuf `Record`s, split across blocks."""
    from wandb.proto import wandb_internal_pb2

    data, position, parts, records = run_file.read_bytes(), 7, b"", []
    while position + 7 <= len(data):
        if 32768 - position % 32768 < 7:  # a block's tail too short for a header is padding
            position += 32768 - position % 32768
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        parts += data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind in (1, 4):  # a whole record, or the last part of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(parts)
            records.append(record)
            parts = b""
    return records


def _key(item) -> str:
    return item.key or "/".join(item.nested_key)


@pytest.mark.slow  # starts W&B's service and creates an MLflow database: about 15 s
@pytest.mark.skipif(
    importlib.util.find_spec("wandb") is None or importlib.util.find_spec("mlflow") is None,
    reason="wandb and mlflow are optional extras: pip install 'vit-finetune-benchmark[wandb,mlflow]'",
)
def test_wandb_offline_and_mlflow_local_store_get_the_same_curves(tmp_path):
    from mlflow.tracking import MlflowClient

    argv = [*tiny_run("bitfit", epochs=2), "--log", "wandb,mlflow"]
    result = run_cli(*argv, cwd=tmp_path, env={"WANDB_MODE": "offline", "WANDB_SILENT": "true"})
    assert result.returncode == 0, result.stderr
    assert "logging is off" not in result.stderr and "logging stopped" not in result.stderr
    row = store.read(tmp_path / "results").iloc[0]
    history = pd.read_parquet(tmp_path / "results" / "epochs")
    assert not (tmp_path / "results" / "tb").exists()  # --log names every sink wanted

    (run_file,) = (tmp_path / "results" / "wandb").glob("offline-run-*/*.wandb")
    records = wandb_records(run_file)
    (run,) = [record.run for record in records if record.WhichOneof("record_type") == "run"]
    assert run.display_name == row["run_id"]
    steps = [
        {_key(item): json.loads(item.value_json) for item in record.history.item}
        for record in records
        if record.WhichOneof("record_type") == "history"
    ]
    assert [step["val/top1"] for step in steps] == pytest.approx(list(history["val_top1"]))
    summary = {
        _key(item): json.loads(item.value_json)
        for record in records
        if record.WhichOneof("record_type") == "summary"
        for item in record.summary.update
    }
    assert summary["final/test_top1"] == pytest.approx(row["test_top1"])

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'results' / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("vit-finetune-benchmark").experiment_id])
    assert run.info.run_name == row["run_id"] and run.data.tags["strategy"] == "bitfit"
    curve = client.get_metric_history(run.info.run_id, "val/top1")
    assert [(m.step, m.value) for m in curve] == list(zip(history["epoch"], history["val_top1"], strict=True))
    assert run.data.metrics["final/test_top1"] == pytest.approx(row["test_top1"])
