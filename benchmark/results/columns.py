"""Every column of every results table, declared once: name, type, unit, meaning, and which way is better.

The parquet schemas (`store`), the column tables in results/README.md (`python -m benchmark.results.readme`
rewrites them; a test checks they are current) and the report's metric lists all come from here.
Adding a metric is one line here plus the line that computes it.
"""

from __future__ import annotations

import pyarrow as pa

from benchmark.results.column import PROVENANCE, TYPES, Column
from benchmark.results.speed_columns import SPEED

RUNS = [
    # identity and outcome of the run
    Column(
        "run_id",
        "str",
        "unique id: UTC start time, strategy, first 8 characters of `config_hash`",
        required=True,
    ),
    Column(
        "status",
        "str",
        "`ok`, `failed` (an exception, e.g. out of memory), `diverged` (non-finite training loss), "
        "`cancelled` (Ctrl-C / SIGTERM), or `superseded` (an `ok` run replaced by a `--force` rerun)",
        required=True,
    ),
    Column("error", "str", "the error message; empty when `ok`"),
    Column("started_at", "str", "start time, ISO 8601 UTC"),
    Column("finished_at", "str", "end time, ISO 8601 UTC"),
    Column(
        "config_hash",
        "str",
        "hash of everything that decides the outcome (strategy, options, dataset, model, weights, seed, "
        "hyper-parameters, precision, validation share); not of the device or evaluation batch size. Resume "
        "skips cells whose hash already has an `ok` row",
        required=True,
    ),
    Column(
        "cell_hash", "str", "`config_hash` without the seed: the report aggregates over it", required=True
    ),
    Column(
        "code_version",
        "str",
        "hash of the code that decides the numbers (the strategy's module, the `strategies` modules it "
        "imports, the training modules; docstrings and comments left out: benchmark/results/identity.py). With "
        "torch/timm/peft major.minor it is the result's identity: `run` does not skip a cell answered by "
        "another (`--stale`), the report never averages across them",
    ),
    # the cell
    Column("strategy", "str", "registry name of the strategy", required=True),
    Column(
        "strategy_options", "str", 'the strategy\'s own options as JSON, e.g. `{"r": 8, "alpha": 16.0, ...}`'
    ),
    Column("dataset", "str", "dataset name", required=True),
    Column(
        "data_source",
        "str",
        "what the run trained on, in words: folder, and whether it matches the checksums",
    ),
    Column(
        "data_verified", "bool", "files match the official checksums (null where there is nothing to check)"
    ),
    Column(
        "n_train",
        "int",
        "training images used: validation is held out of the official training set, then `train_size` applies",
        "images",
    ),
    Column("n_val", "int", "validation images", "images"),
    Column(
        "n_labelled",
        "int",
        "labelled images the run used: `n_train + n_val` (validation chose the epoch and any search point)",
        "images",
    ),
    Column("n_test", "int", "test images", "images"),
    Column("num_classes", "int", "classes"),
    Column("model", "str", "timm model name", required=True),
    Column("model_args", "str", "extra `timm.create_model` arguments as JSON"),
    Column("pretrained", "bool", "the backbone started from pretrained weights"),
    Column(
        "weights",
        "str",
        "where the weights came from: `hub:<id>`, `file:<path>` or `none (random initialisation)`",
    ),
    Column(
        "normalisation", "str", "where the input mean and std came from (the weights' own config, or timm's)"
    ),
    Column("pos_embed", "str", "position embeddings: as saved, or how they were resampled to `img_size`"),
    Column(
        "weights_file", "str", "with `--keep-weights`: the saved parameters of the validation-selected model"
    ),
    Column("img_size", "int", "input resolution (images are resized to it on the device)", "px"),
    Column("seed", "int", "the run's seed (model init, batch order, augmentation)", required=True),
    Column("epochs", "int", "training epochs (unused when `steps` is set)"),
    Column("steps", "int", "optimiser steps in total, replacing `epochs` when set; 0 = unset", "steps"),
    Column("warmup_steps", "int", "linear warm-up length when `steps` is set", "steps"),
    Column(
        "accumulate",
        "int",
        "micro-batches per optimiser step (gradient accumulation); `batch_size` is per optimiser step",
    ),
    Column(
        "train_size",
        "str",
        "the training subset as given: images (`1000`) or a share (`10%`), class-stratified, the same for "
        "every strategy and seed; empty = all (`n_train` is the count used)",
    ),
    Column(
        "schedule",
        "str",
        "after warm-up: `cosine` (to zero), `constant`, or `plateau` (ReduceLROnPlateau on validation loss: "
        "factor 0.1, patience 10 epochs)",
    ),
    Column(
        "early_stop",
        "int",
        "stop after this many epochs without a better validation top-1; 0 = off",
        "epochs",
    ),
    Column("batch_size", "int", "images per optimiser step, over all processes", "images"),
    Column("eval_batch_size", "int", "images per evaluation batch (does not change results)", "images"),
    Column("lr", "float", "peak learning rate, used as given (never scaled with the batch size)"),
    Column("optimizer", "str", "timm optimiser name (`momentum`: SGD with momentum 0.9)"),
    Column(
        "weight_decay",
        "float",
        "decoupled or L2 as the optimiser defines it; not applied to norms, biases, position embedding, class token",
    ),
    Column("warmup_epochs", "float", "linear warm-up length (unused when `steps` is set)", "epochs"),
    Column("clip_grad_norm", "float", "gradient clipping at this global L2 norm; 0 is off"),
    Column(
        "augment",
        "bool",
        "random crop (padding 1/8 of the side) and, where the dataset allows, horizontal flip",
    ),
    Column("precision", "str", "`fp32` or `bf16` (autocast)"),
    Column("tf32", "bool", "float32 matrix products on the GPU used TF32 tensor cores"),
    Column("val_fraction", "float", "share of the official training set held out for validation", "fraction"),
    Column("device", "str", "torch device, e.g. `cuda:0` or `cpu`"),
    Column("device_name", "str", "GPU name, or CPU model and thread count"),
    Column("world_size", "int", "data-parallel processes (1 without torchrun)"),
    Column("config_json", "str", "the full resolved configuration as JSON"),
    # a tuned sweep (`--search`): not in `config_hash`, the point's values are already in the options above
    Column(
        "stage",
        "str",
        "`search` (a point of the `--search` grid, run with the first seed), `final` (the chosen point with "
        "a further seed; its first seed is the search row), empty for a plain run",
    ),
    Column(
        "search_space",
        "str",
        'the axes this strategy searched, as JSON in grid order, e.g. `{"lr": [0.001, 0.01]}`',
    ),
    Column("search_point", "str", 'this row\'s values on those axes, as JSON, e.g. `{"lr": 0.001}`'),
    Column(
        "chosen",
        "bool",
        "this row's point is the one chosen by validation top-1 (a search row is marked once the whole "
        "search of its strategy is on disk)",
    ),
    # outcomes: every test metric is of the validation-selected model
    Column(
        "test_top1",
        "float",
        "test accuracy of the validation-selected model (the epoch with the best validation top-1)",
        "fraction",
        "higher",
    ),
    Column(
        "test_top1_last_epoch",
        "float",
        "test accuracy of the last epoch's model, for comparison only",
        "fraction",
    ),
    Column(
        "test_top5", "float", "test top-5 accuracy (k = min(5, classes)), same model", "fraction", "higher"
    ),
    Column("test_loss", "float", "mean test cross-entropy, same model", "nats", "lower"),
    Column(
        "test_macro_f1",
        "float",
        "macro-averaged F1 over classes on the test set, same model",
        "fraction",
        "higher",
    ),
    Column(
        "best_val_top1",
        "float",
        "validation accuracy of the selected model (the best over epochs)",
        "fraction",
        "higher",
    ),
    Column("best_val_epoch", "int", "the epoch (1-based) of the selected model"),
    Column("final_val_top1", "float", "validation accuracy after the last epoch", "fraction"),
    Column("epochs_completed", "int", "epochs finished (the last one partial if `steps` ends inside it)"),
    Column("early_stopped", "bool", "training stopped before its planned end because of `early_stop`"),
    Column(
        "resumed_from_epoch", "int", "epochs restored from a checkpoint of an interrupted run (0 if none)"
    ),
    # costs
    Column(
        "trainable_params",
        "int",
        "parameters that receive gradients, the head included, each tensor counted once",
        better="lower",
    ),
    Column(
        "trainable_params_excluding_head", "int", "the same without the classification head", better="lower"
    ),
    Column(
        "effective_params",
        "int",
        "trainable parameters that reach the output at the end of training, the head included: "
        "`trainable_params` less what the method stores but never uses (BOFT: the symmetric half of each "
        "block) or prunes away (AdaLoRA: ranks beyond the final budget); plots and tables use "
        "`trainable_params`",
    ),
    Column("head_params", "int", "parameters of the classification head"),
    Column("total_params", "int", "every distinct parameter of the trained model (adapters included)"),
    Column("trainable_fraction", "float", "`trainable_params / total_params`", "fraction", "lower"),
    Column(
        "train_seconds",
        "float",
        "wall-clock time of training: batches and steps, plus the cached trunk's pass over the training set "
        "(`feature_seconds`' training share) in every run that uses those outputs, computed or reused "
        "(GPU work waited for)",
        "s",
        "lower",
    ),
    Column(
        "eval_seconds",
        "float",
        "wall-clock time of validation every epoch and the final test evaluation, plus the cached trunk's "
        "pass over the validation and test sets when its outputs are used",
        "s",
    ),
    Column(
        "train_images_per_second",
        "float",
        "images through the whole model (trunk and trained part) per second of `train_seconds` (which "
        "includes the feature pass): optimiser steps taken x batch when every batch runs the whole model; with "
        "cached trunk outputs, the training images (each went through the trunk once; later epochs run the "
        "trained part only), so the probe's many cheap epochs are not counted as images",
        "images/s",
        "higher",
    ),
    Column(
        "peak_memory_bytes",
        "int",
        "on GPU: the CUDA allocator's peak during the run above what was allocated at its start (the run's "
        "own tensors; trunk outputs shared between runs are kept on the host and count in every run that "
        "uses them); on CPU: the whole process's resident-set peak (see `memory_kind`), which depends on what "
        "ran before in the process: the report never marks it best",
        "bytes",
        "lower",
    ),
    Column(
        "memory_kind",
        "str",
        "`cuda_allocated_above_start` (GPU), `cpu_process_resident_peak` (the process's resident high-water "
        "mark, reset at the run's start) or `cpu_process_lifetime_peak` (where it could not be reset: the "
        "peak over the process's whole life)",
    ),
    Column("trunk_frozen", "bool", "the strategy froze a prefix of the model, which ran without autograd"),
    Column("trunk_cached", "bool", "that prefix ran once per image and training used its cached outputs"),
    Column(
        "trunk_cache_reused",
        "bool",
        "those outputs came from an earlier cell of the same sweep with the same trunk, preprocessing and "
        "images (another learning rate or seed): no pass of the trunk in this run, but its cost is charged",
    ),
    Column(
        "feature_seconds",
        "float",
        "wall-clock time of the cached trunk's one no-grad pass over every image (training, validation, "
        "test), measured when it ran and charged to every run that uses its outputs, reused or not; part of "
        "`train_seconds` (training set) and `eval_seconds` (the others); 0 when the trunk is not cached",
        "s",
    ),
    Column("trunk_cache_bytes", "int", "size of those cached outputs (0 when not cached)", "bytes"),
    Column("compiled", "bool", "the trained module ran through `torch.compile` (`--compile`)"),
    *PROVENANCE,
]

EPOCHS = [
    Column("run_id", "str", "the run", required=True),
    Column("epoch", "int", "1-based epoch", required=True),
    Column(
        "train_loss", "float", "mean training cross-entropy over the epoch's batches", "nats", required=True
    ),
    Column("train_top1", "float", "training accuracy over the epoch (on augmented images)", "fraction"),
    Column("val_loss", "float", "mean validation cross-entropy after the epoch", "nats"),
    Column("val_top1", "float", "validation accuracy after the epoch", "fraction", required=True),
    Column("lr", "float", "learning rate at the end of the epoch"),
    Column("train_seconds", "float", "wall-clock seconds of the epoch's training", "s"),
]

CLASSES = [
    Column("run_id", "str", "the run", required=True),
    Column("class_index", "int", "label index", required=True),
    Column("class_name", "str", "label name from the dataset", required=True),
    Column(
        "accuracy",
        "float",
        "share of the class's test images classified correctly (recall)",
        "fraction",
        required=True,
    ),
    Column("support", "int", "test images of the class", "images"),
]

CONFUSION = [
    Column("run_id", "str", "the run", required=True),
    Column("true_index", "int", "true label", required=True),
    Column("predicted_index", "int", "predicted label", required=True),
    Column("count", "int", "test images with that pair (zero cells are omitted)", "images", required=True),
]

TABLES: dict[str, list[Column]] = {
    "runs": RUNS,
    "epochs": EPOCHS,
    "classes": CLASSES,
    "confusion": CONFUSION,
    "speed": SPEED,
}


def schema(table: str) -> pa.Schema:
    return pa.schema([(column.name, TYPES[column.type]) for column in TABLES[table]])


def required(table: str) -> set[str]:
    return {column.name for column in TABLES[table] if column.required}


def column(table: str, name: str) -> Column:
    return next(item for item in TABLES[table] if item.name == name)
