"""Trained parameters kept with --keep-weights, and the way back to a model with its head."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from benchmark.config import RunConfig, make_options
from benchmark.errors import UsageError
from benchmark.results import store
from benchmark.train.prepare import prepare_model
from benchmark.train.runner import Outcome
from benchmark.train.step import seed_everything
from benchmark.weights import backbone as backbones


def save(cell: RunConfig, outcome: Outcome, run_id: str) -> Path:
    """The validation-selected model's trained state (adapter and head, or everything, with the trained part's
    buffers) and what is needed to rebuild the model."""
    from safetensors.torch import save

    path = store.weights_path(cell.results_dir, run_id)
    tensors = {name: tensor.contiguous() for name, tensor in outcome.final_state.items()}
    metadata = {"config_json": cell.to_json(), "run_id": run_id, "num_classes": str(outcome.num_classes)}
    encoded = save(tensors, metadata=metadata)
    return store.write_file(path, lambda file: file.write(encoded))


def load(path: Path) -> backbones.Backbone:
    """A run saved with --keep-weights, in eval mode: the same backbone (pretrained weights, or the same
    random initialisation for the run's seed), the strategy's preparation, then the trained state; with
    the input size, mean and std it was trained with."""
    from safetensors.torch import load_file

    metadata, config = _kept_metadata(path)
    seed_everything(config["seed"])
    created = backbones.create(
        config["model"],
        int(metadata["num_classes"]),
        config["weights"],
        config["img_size"],
        config["model_args"],
    )
    options = make_options(config["strategy"], config["options"])
    model = prepare_model(config["strategy"], options, created.model).model
    state = load_file(str(path))
    missing_trained = set(state) - set(model.state_dict())
    if missing_trained:
        raise UsageError(
            f"{path} holds parameters the rebuilt model lacks, e.g. {sorted(missing_trained)[0]}"
        )
    try:
        model.load_state_dict(state, strict=False)
    except RuntimeError as error:
        raise UsageError(
            f"{path} does not fit the rebuilt model ({str(error).splitlines()[-1].strip()})"
        ) from None
    return dataclasses.replace(created, model=model.eval())


KEPT_KEYS = ("model", "weights", "img_size", "model_args", "strategy", "options", "seed")


def _kept_metadata(path: Path) -> tuple[dict, dict]:
    """The file's metadata and the run's configuration, or a one-line UsageError for a damaged file or
    one that --keep-weights did not write."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as file:
            metadata = file.metadata() or {}
        config = json.loads(metadata["config_json"])
        int(metadata["num_classes"])
        missing = [key for key in KEPT_KEYS if key not in config]
    except Exception as error:  # safetensors, json and a missing key raise different types
        raise UsageError(
            f"{path} is not a kept-weights file written by 'run --keep-weights' "
            f"({type(error).__name__}: {' '.join(str(error).split())[:120]})"
        ) from None
    if missing:
        raise UsageError(f"{path} is not a kept-weights file: its metadata lacks {', '.join(missing)}")
    return metadata, config
