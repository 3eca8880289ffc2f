"""The command line's flags: one argparse parser per command, built without importing torch.

A bad argument is one line and exit status 2 (`Parser.error`). Training flags are generated from
`TrainParams`'s fields, so a new hyper-parameter gets its flag without an edit here.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from benchmark.config import PRECISIONS, TRAIN_KEYS, TrainParams
from benchmark.data import datasets
from benchmark.errors import UsageError
from benchmark.results import curves
from benchmark.sweep import launch

DEFAULT_MODEL = "vit_base_patch16_224.augreg_in21k"


GPU_EVAL_BATCH, CPU_EVAL_BATCH = 512, 64  # images per evaluation (and trunk-caching) batch


DESCRIPTION = """Compare ways of fine-tuning a Vision Transformer (linear probe, full fine-tuning,
LoRA and other parameter-efficient methods) on an image dataset: 'run' trains
and evaluates strategies, one results row per run; 'report' turns the results
into tables and plots."""


EPILOG = """examples:
  %(prog)s run --strategies lora,linear --dataset cifar100
      fine-tune a pretrained ViT-B/16 with LoRA and with a linear probe on CIFAR-100
  %(prog)s report
      tables and plots of every result in results/, written to results/report/

'%(prog)s COMMAND --help' shows a command's options,
'%(prog)s list' the strategies and datasets."""


class Parser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line and exit status 2; `commands` holds the parser of each
    subcommand by name (filled by `build_parser`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.flags: dict[str, argparse.Action] = {}  # each flag's action by destination (add_argument's)
        super().__init__(*args, **kwargs)
        for parent in kwargs.get("parents", []):  # argparse copies a parent's actions without add_argument
            self.flags.update(parent.flags)
        self.commands: dict[str, Parser] = {}

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        action = super().add_argument(*args, **kwargs)
        action.repeatable = kwargs.get("action") == "append"  # argparse has no public name for the kind
        self.flags[action.dest] = action
        return action

    def error(self, message: str) -> None:
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _shared_flags(default_model: str) -> Parser:
    """Flags that `run` and `speed` share, defined once."""
    shared = Parser(add_help=False)
    shared.add_argument("--strategies", default="all", help="comma-separated names, or 'all' (default)")
    shared.add_argument("--model", default=default_model, help=f"a timm model name (default {default_model})")
    shared.add_argument(
        "--model-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="passed to timm.create_model, e.g. depth=4; repeatable",
    )
    shared.add_argument("--img-size", type=int, help="input resolution in pixels (default: the model's)")
    shared.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    shared.add_argument(
        "--precision",
        default="auto",
        choices=PRECISIONS,
        help="auto (default): bf16 autocast on GPU, fp32 on CPU",
    )
    shared.add_argument(
        "--compile", action="store_true", help="torch.compile the trained module (slow start)"
    )
    shared.add_argument("--results-dir", type=Path, default=Path("results"), help="default results")
    return shared


def train_defaults() -> dict[str, Any]:
    """TrainParams' defaults, read off its fields: TrainParams() would check its optimizer against
    timm's list, which imports torch, and `--help` and `list` answer without it."""
    return {field.name: field.default for field in dataclasses.fields(TrainParams)}


def _add_train_flags(run: Parser) -> None:
    """One flag per training hyper-parameter; unset flags leave each strategy's own default."""
    defaults = train_defaults()
    for key in TRAIN_KEYS:
        flag = "--" + key.replace("_", "-")
        if key == "augment":
            run.add_argument(
                flag,
                action=argparse.BooleanOptionalAction,
                default=None,
                help="random crop and flip (default: the strategy's choice)",
            )
        else:
            run.add_argument(
                flag,
                type=type(defaults[key]),
                default=None,
                help="default: the strategy's (see 'list')",
            )


def _add_run(commands, parents: list[Parser]) -> None:
    run = commands.add_parser(
        "run",
        parents=parents,
        allow_abbrev=False,
        help="train and evaluate strategies; one parquet row per run",
    )
    run.add_argument(
        "--config",
        type=Path,
        metavar="FILE.yaml",
        help="an experiment file: YAML keys are these flags' names (lr, batch_size, set, search, ...), plus "
        "lists under datasets, models, train_sizes (one sweep each); flags given here win over the file",
    )
    run.add_argument("--dataset", default="cifar10", help=f"one of {', '.join(datasets.DATASETS.names())}")
    run.add_argument(
        "--weights",
        default="hub",
        help="'hub' (default), a local .safetensors/.pth/.bin/.npz file, a save_pretrained folder, "
        "or hf:OWNER/NAME[@REVISION]",
    )
    run.add_argument("--no-pretrained", action="store_true", help="random initialisation for every strategy")
    run.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="STRATEGY.KEY=VALUE",
        help="a strategy's option or training hyper-parameter, e.g. lora.r=16; repeatable",
    )
    _add_train_flags(run)
    run.add_argument(
        "--eval-batch-size",
        type=int,
        help=f"images per evaluation batch (default {GPU_EVAL_BATCH} on GPU, "
        f"{CPU_EVAL_BATCH} on CPU); changes speed, never results",
    )
    run.add_argument("--seeds", default="0", help="comma-separated seeds (default 0)")
    run.add_argument(
        "--search",
        action="append",
        default=[],
        metavar="KEY=V1,V2,...",
        help="search this hyper-parameter or option (lr, weight_decay, lora.r, ...) on validation with the "
        "first seed, then run the best point with every seed; 'default': each strategy's own grid; repeatable",
    )
    run.add_argument("--val-fraction", type=float, help="share of the training set held out for validation")
    run.add_argument("--data-dir", type=Path, default=Path("data"), help="dataset cache (default data)")
    run.add_argument(
        "--no-download", action="store_true", help="fail instead of downloading a missing dataset"
    )
    _add_run_control(run)


def _add_run_control(run: Parser) -> None:
    """How `run` treats results already there, what it writes and shows, and where it runs."""
    run.add_argument("--force", action="store_true", help="rerun cells that already have a successful row")
    run.add_argument(
        "--stale",
        choices=("refuse", "rerun", "keep"),
        default="refuse",
        help="cells whose results are of another code version or torch/timm/peft major.minor: refuse to run "
        "(default), rerun them (the new rows supersede the old), or keep the old results as done",
    )
    run.add_argument(
        "--keep-weights", action="store_true", help="save each run's selected model under RESULTS_DIR/weights"
    )
    run.add_argument("--shard", default="0/1", help="I/N: run every N-th cell starting at I (default 0/1)")
    run.add_argument(
        "--dry-run", action="store_true", help="print the plan with parameter counts; write nothing"
    )
    run.add_argument("--json", action="store_true", help="with --dry-run: the plan as JSON on stdout")
    run.add_argument(
        "--verbose",
        action="store_true",
        help="a line for every epoch (default: a live display on a terminal, a few lines per run when piped)",
    )
    curves.add_flags(run)
    launch.add_flags(run)


def _add_speed(commands, parents: list[Parser]) -> None:
    speed = commands.add_parser(
        "speed",
        parents=parents,
        allow_abbrev=False,
        help="time one training step per strategy on synthetic input: images/s, ms/step, memory, TFLOP/s, MFU",
    )
    speed.add_argument("--num-classes", type=int, default=100)
    speed.add_argument("--batch-size", type=int, default=128)
    speed.add_argument("--optimizer", help="default: each strategy's own")
    speed.add_argument("--warmup-steps", type=int, default=3)
    speed.add_argument("--steps", type=int, default=10, help="timed steps (default 10)")
    speed.add_argument(
        "--peak-tflops", type=float, help="the device's peak, for MFU (known GPUs are built in)"
    )
    speed.add_argument("--no-baselines", action="store_true", help="skip the bare loop and forward-only rows")


def build_parser() -> Parser:
    parser = Parser(
        prog="python -m benchmark",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,  # keeps the lines of the texts above
        allow_abbrev=False,
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    _add_run(commands, [_shared_flags(DEFAULT_MODEL)])
    build = commands.add_parser("report", allow_abbrev=False, help="tables and plots from the results folder")
    build.add_argument("--results-dir", type=Path, default=Path("results"))
    build.add_argument("--out", type=Path, help="output folder (default RESULTS_DIR/report)")
    build.add_argument("--dataset", help="only this dataset")
    build.add_argument("--model", help="only this model")
    build.add_argument(
        "--reference",
        help="strategy every other is compared with (paired test over shared seeds; default: full)",
    )
    _add_speed(commands, [_shared_flags(DEFAULT_MODEL.split(".")[0])])
    listing = commands.add_parser("list", help="the registered strategies and datasets, with their defaults")
    listing.add_argument(
        "--markdown",
        action="store_true",
        help="the strategy table of the README, with ViT-B/16 parameter counts",
    )
    demo = commands.add_parser(
        "demo",
        help="offline demo: every strategy adapts the tiny glyph-pretrained ViT shipped in weights/ to real "
        "handwritten digits (protocols/demo.yaml), with a random-initialisation reference, on the CPU in "
        "minutes; then the report",
    )
    demo.add_argument("--results-dir", type=Path, default=Path("results/demo"))
    demo.add_argument(
        "--workers",
        type=int,
        default=None,
        help="local worker processes that share the sweep, one CPU thread each (default: the cores, at most "
        f"{DEMO_MAX_WORKERS}; 1 runs it in this process)",
    )
    demo.add_argument(
        "--seeds",
        default="0",
        help="seeds of every cell (default 0: one seed of every strategy, minutes on 2 cores; 0,1,2 gives "
        "the intervals and paired tests in three times as long)",
    )
    _add_kept_run_commands(commands)
    _add_pretrain(commands)
    parser.commands = dict(commands.choices)
    return parser


def _add_pretrain(commands) -> None:
    """Flags left unset keep the shipped recipe's values (benchmark.train.pretrain.Recipe)."""
    pretrain = commands.add_parser(
        "pretrain",
        allow_abbrev=False,
        help="pretrain the demo's tiny ViT on rendered glyphs (offline, CPU); writes safetensors + JSON",
    )
    pretrain.add_argument(
        "--out", type=Path, default=Path("weights/glyph_vit_p8_d2_w64.safetensors"), help="weights file"
    )
    for flag, kind in (
        ("--steps", int),
        ("--batch-size", int),
        ("--lr", float),
        ("--weight-decay", float),
        ("--warmup-steps", int),
        ("--seed", int),
        ("--val-images", int),
        ("--eval-every", int),
        ("--threads", int),
    ):
        pretrain.add_argument(flag, type=kind, help="default: the shipped recipe's")


def _add_kept_run_commands(commands) -> None:
    """eval, predict and inspect: what a user does with a run kept with --keep-weights."""
    where = Parser(add_help=False)
    where.add_argument("--results-dir", type=Path, default=Path("results"))
    where.add_argument("--data-dir", type=Path, default=Path("data"))
    evaluate = commands.add_parser(
        "eval",
        parents=[where],
        allow_abbrev=False,
        help="evaluate a kept run again: top-1, top-5, loss, macro F1",
    )
    evaluate.add_argument("run", help="run id, or a unique prefix of it")
    evaluate.add_argument("--dataset", help="another dataset with the same classes (default: the run's)")
    evaluate.add_argument("--split", default="test", choices=("test", "val"))
    evaluate.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    evaluate.add_argument("--json", action="store_true", help="the numbers as JSON on stdout")
    predict = commands.add_parser(
        "predict",
        parents=[where],
        allow_abbrev=False,
        help="top-5 classes of image files (PNG, JPEG) by a kept run",
    )
    predict.add_argument("run", help="run id, or a unique prefix of it")
    predict.add_argument("images", nargs="+", help="image files")
    inspect = commands.add_parser(
        "inspect",
        parents=[where],
        allow_abbrev=False,
        help="figures of a kept run (attention rollout, position similarity, patch filters, sample predictions)",
    )
    inspect.add_argument("run", nargs="?", help="run id or prefix (or give --model and --weights)")
    inspect.add_argument("--model", help="a backbone that was never fine-tuned: timm model name")
    inspect.add_argument("--weights", default="hub", help="with --model: 'hub', a file, a folder or hf:NAME")
    inspect.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE")
    inspect.add_argument("--img-size", type=int)
    inspect.add_argument(
        "--dataset", default="digits", help="with --model: images to draw on (default digits)"
    )
    inspect.add_argument("--out", type=Path, help="output folder (default RESULTS_DIR/report)")


DEMO_MAX_WORKERS = 8  # each worker holds about 1 GiB; the tiny model gains nothing from a second thread
