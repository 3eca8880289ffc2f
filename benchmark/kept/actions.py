"""What a user does with a run kept with --keep-weights: evaluate it again, classify image files, look inside.

A run is named by its id or a unique prefix of it; its model is rebuilt by `trained.load` (the same
backbone, the strategy's preparation, the validation-selected trained state).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from benchmark.data import datasets
from benchmark.data.batches import Pipeline, to_model_input
from benchmark.data.images import center_square, read_images
from benchmark.errors import UsageError
from benchmark.kept import inspection, trained
from benchmark.results import store
from benchmark.train.distributed import Dist
from benchmark.train.inputs import Inputs, evaluate
from benchmark.train.runner import TEST_METRICS
from benchmark.weights import backbone as backbones

INSPECTED_IMAGES = 64  # test images drawn on for the figures (8 get rollout maps, 24 are shown)


def safe_file_name(text: str) -> str:
    """`text` as one plain file name: only letters, digits, '.', '_' and '-', never starting with '.', so
    that a run id from a planted row cannot name a file outside the output folder."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "-", text).lstrip(".")
    return cleaned or "run"


def find_run(results_dir: Path, run_id: str) -> pd.Series:
    """The run whose id is or starts with `run_id`, made with --keep-weights."""
    runs = store.read(results_dir, "runs")
    kept = runs[runs["weights_file"].notna()] if not runs.empty else runs
    matches = kept[kept["run_id"].str.startswith(run_id)] if not kept.empty else kept
    if len(matches) == 1:
        return matches.iloc[0]
    if len(matches) > 1:
        raise UsageError(
            f"'{run_id}' names {len(matches)} runs ({', '.join(matches['run_id'][:4])}, ...); give more of the id"
        )
    listed = ", ".join(kept["run_id"][:5]) if not kept.empty else "none"
    raise UsageError(
        f"no run '{run_id}' with kept weights in {results_dir}; runs with kept weights: {listed} "
        "(make one with 'run ... --keep-weights')"
    )


def load_run(row: pd.Series, results_dir: Path) -> backbones.Backbone:
    """The run's kept model, from RESULTS_DIR/weights/ of the folder given: never from the path recorded in
    the row, which may be another folder's (a copied or merged results folder) or point anywhere."""
    name = Path(str(row["weights_file"])).name
    path = store.weights_path(results_dir, name)
    if not name.endswith(".safetensors") or not path.is_file():
        raise UsageError(
            f"the weights of run {row['run_id']} are missing: {path} does not exist "
            f"(the row names {row['weights_file']})"
        )
    return trained.load(path)


def class_names(row: pd.Series, results_dir: Path) -> list[str]:
    classes = store.read(results_dir, "classes")
    mine = classes[classes["run_id"] == row["run_id"]].sort_values("class_index")
    return list(mine["class_name"]) if len(mine) else [str(index) for index in range(int(row["num_classes"]))]


def evaluate_run(
    row: pd.Series,
    results_dir: Path,
    device: torch.device,
    dataset: str | None = None,
    split: str = "test",
    data_dir: Path = Path("data"),
    eval_batch_size: int = 64,
) -> dict[str, Any]:
    """Top-1, top-5, loss and macro F1 of the kept model on a split of its dataset (or another with the
    same classes), through the same pipeline as training."""
    kept = load_run(row, results_dir)
    name = dataset or row["dataset"]
    splits = datasets.load(name, data_dir, float(row["val_fraction"]), download=False)
    if splits.class_names != class_names(row, results_dir):
        raise UsageError(
            f"{name} has other classes than run {row['run_id']} ({row['dataset']}, {row['num_classes']} classes)"
        )
    splits = splits.to(device)
    pipeline = Pipeline(kept.img_size, kept.mean, kept.std, device, splits.mirror_invariant)
    inputs = Inputs(splits, pipeline, None, False, str(row["precision"]), eval_batch_size, device)
    tally = evaluate(kept.model.to(device), inputs, split, len(splits.class_names), Dist())
    metrics = {key.removeprefix("test_"): metric(tally) for key, metric in TEST_METRICS.items()}
    return {"run_id": row["run_id"], "dataset": name, "split": split, "images": tally.count} | metrics


def predict(row: pd.Series, results_dir: Path, paths: list[str], k: int = 5) -> tuple[list, list[str]]:
    """The top-k classes of each readable image file, and one line for each file that is not an image."""
    kept = load_run(row, results_dir)
    images, errors = read_images(paths)
    names = class_names(row, results_dir)
    mean, std = (torch.tensor(values).view(1, -1, 1, 1) for values in (kept.mean, kept.std))
    answers = []
    with torch.no_grad():
        for path, image in images:
            logits = kept.model(to_model_input(center_square(image)[None], kept.img_size, mean, std))
            answers.append((path, inspection.top_k(logits, names, k)[0]))
    return answers, errors


def inspect_run(row: pd.Series, results_dir: Path, out_dir: Path, data_dir: Path = Path("data")):
    """The four figures of a kept run on its own test images, named `<run_id>__<figure>.png`."""
    kept = load_run(row, results_dir)
    test = datasets.load(row["dataset"], data_dir, float(row["val_fraction"]), download=False).test
    pipeline = Pipeline(kept.img_size, kept.mean, kept.std, torch.device("cpu"), flip=False)
    images = pipeline(test.images[:INSPECTED_IMAGES])
    names = class_names(row, results_dir)
    return inspection.write_inspection(
        kept.model,
        images,
        test.labels[:INSPECTED_IMAGES],
        None,
        names,
        kept.mean,
        kept.std,
        out_dir,
        f"{safe_file_name(str(row['run_id']))}__",
    )


def inspect_backbone(
    model_name: str,
    weights: str,
    dataset: str,
    out_dir: Path,
    model_args: dict,
    img_size: int | None,
    data_dir: Path,
):
    """The figures that need no trained head, for a backbone that was never fine-tuned."""
    splits = datasets.load(dataset, data_dir, datasets.info(dataset).default_val_fraction, download=False)
    created = backbones.create(model_name, len(splits.class_names), weights, img_size, model_args)
    pipeline = Pipeline(created.img_size, created.mean, created.std, torch.device("cpu"), flip=False)
    images = pipeline(splits.test.images[:INSPECTED_IMAGES])
    prefix = f"{safe_file_name(model_name)}__"
    return inspection.write_backbone_figures(
        created.model.eval(), images, created.mean, created.std, out_dir, prefix
    )
