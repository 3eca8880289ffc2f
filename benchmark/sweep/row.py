"""A results row assembled: what identifies the run (configuration, data, model, code and library versions,
device), to which the runner's measurements and the outcome are added (`engine`).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import torch

from benchmark.config import RunConfig
from benchmark.data import datasets
from benchmark.provenance import device_name, provenance
from benchmark.results import identity
from benchmark.train.distributed import Dist


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
