"""Trained parameters kept with --keep-weights, and the way back to a model with its head."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from benchmark import backbone as backbones
from benchmark.config import RunConfig, make_options
from benchmark.errors import UsageError
from benchmark.prepare import prepare_model
from benchmark.runner import Outcome
from benchmark.training import seed_everything


def save(cell: RunConfig, outcome: Outcome, run_id: str) -> Path:
    """The validation-selected model's trained state (adapter and head, or everything, with the trained part's
    buffers) and what is needed to rebuild the model."""
    from safetensors.torch import save_file

    path = cell.results_dir / "weights" / f"{run_id}.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {name: tensor.contiguous() for name, tensor in outcome.final_state.items()}
    metadata = {"config_json": cell.to_json(), "run_id": run_id, "num_classes": str(outcome.num_classes)}
    save_file(tensors, str(path), metadata=metadata)
    return path


def load(path: Path) -> backbones.Backbone:
    """A run saved with --keep-weights, in eval mode: the same backbone (pretrained weights, or the same
    random initialisation for the run's seed), the strategy's preparation, then the trained state; with
    the input size, mean and std it was trained with."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as file:
        metadata = file.metadata()
    config = json.loads(metadata["config_json"])
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
    missing_trained = set(load_file(str(path))) - set(model.state_dict())
    if missing_trained:
        raise UsageError(
            f"{path} holds parameters the rebuilt model lacks, e.g. {sorted(missing_trained)[0]}"
        )
    model.load_state_dict(load_file(str(path)), strict=False)
    return dataclasses.replace(created, model=model.eval())
