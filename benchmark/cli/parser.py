"""The command line's flags: one argparse parser per command, built without importing torch.

A bad argument is one line and exit status 2 (`Parser.error`). The flags of `run` (and those `speed`
shares) are generated from the fields of `cli.experiment.Experiment`, so a new setting needs no edit here.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from benchmark.cli import experiment
from benchmark.cli.experiment import DEFAULT_MODEL
from benchmark.errors import UsageError

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
        super().__init__(*args, **kwargs)
        self.commands: dict[str, Parser] = {}

    def error(self, message: str) -> None:
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _add_run(commands) -> None:
    run = commands.add_parser(
        "run", allow_abbrev=False, help="train and evaluate strategies; one parquet row per run"
    )
    experiment.add_flags(run)


def _add_speed(commands) -> None:
    speed = commands.add_parser(
        "speed",
        allow_abbrev=False,
        help="time one training step per strategy on synthetic input: images/s, ms/step, memory, TFLOP/s, MFU",
    )
    experiment.add_flags(speed, only_speed=True, model=DEFAULT_MODEL.split(".")[0])
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
    _add_run(commands)
    build = commands.add_parser("report", allow_abbrev=False, help="tables and plots from the results folder")
    build.add_argument("--results-dir", type=Path, default=Path("results"))
    build.add_argument("--out", type=Path, help="output folder (default RESULTS_DIR/report)")
    build.add_argument("--dataset", help="only this dataset")
    build.add_argument("--model", help="only this model")
    build.add_argument(
        "--reference",
        help="strategy every other is compared with (paired test over shared seeds; default: full)",
    )
    _add_speed(commands)
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
