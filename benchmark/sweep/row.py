"""A results row assembled, here and nowhere else: what identifies the run (configuration, data, model, code
and library versions, device; `start`), the backbone it got (`backbone_columns`), then its status and the
runner's measurements (`finish`). A tuned sweep's tags (stage, search point) come from `search`; the
`weights_file` of a kept run from `engine`. Rows are written and rewritten only by `results.store`.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from typing import Any

import torch

from benchmark.config import RunConfig
from benchmark.data import datasets
from benchmark.provenance import device_name, provenance
from benchmark.results import identity
from benchmark.results.status import Status
from benchmark.train.distributed import Dist


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def start(
    cell: RunConfig,
    splits: datasets.Splits,
    device: torch.device,
    dist: Dist,
    run_id: str,
    tags: dict[str, Any],
) -> dict[str, Any]:
    """The row of a run that starts now: its identity and the tuned sweep's tags (none outside one)."""
    return {"run_id": run_id, "started_at": _now(), **identity_row(cell, splits, device, dist), **tags}


def backbone_columns(backbone: Any) -> dict[str, Any]:
    """What the run's backbone turned out to be: weights, input statistics, position embedding, resolution."""
    return {
        "weights": backbone.weights,
        "normalisation": backbone.normalisation,
        "pos_embed": backbone.pos_embed,
        "img_size": backbone.img_size,  # the resolution it ran at (the cell's may be "the model's default")
    }


def finish(row: dict[str, Any], cell: RunConfig, status: Status, error: str, outcome: Any) -> None:
    """The row completed: status, error, end time and, for a run that finished, the runner's columns."""
    row.update(status=status.value, error=error, finished_at=_now())
    row.setdefault("weights", cell.weights)
    if outcome is not None:
        row.update(outcome.row)


def identity_row(
    cell: RunConfig, splits: datasets.Splits, device: torch.device, dist: Dist
) -> dict[str, Any]:
    return {
        "config_hash": cell.config_hash,
        "cell_hash": cell.cell_hash,
        "code_version": identity.code_version(cell.strategy),
        "strategy": cell.strategy,
        "strategy_options": json.dumps(dataclasses.asdict(cell.options), sort_keys=True),
        "dataset": cell.dataset,
        "data_source": splits.source,
        "data_verified": splits.verified,
        "n_train": datasets.train_count(splits, cell.train.train_size),
        "n_val": len(splits.val),
        "n_labelled": datasets.train_count(splits, cell.train.train_size) + len(splits.val),
        "n_test": len(splits.test),
        "num_classes": len(splits.class_names),
        "model": cell.model,
        "model_args": json.dumps(dict(cell.model_args), sort_keys=True),
        "pretrained": cell.pretrained,
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
