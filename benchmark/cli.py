"""`python -m benchmark {run,report,list}`: argument parsing and one-line errors; the work is elsewhere.

`--help`, `list` and usage errors answer without importing torch, timm, peft or pandas: the commands import
the modules that do the work when they run, and `run` checks the names it is given before that.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from contextlib import nullcontext
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from rich.console import Console
from rich.table import Table

import strategies
from benchmark import curves, data, launch
from benchmark.arguments import int_list, key_values, shard
from benchmark.config import PRECISIONS, TRAIN_KEYS, TrainParams, strategy_class
from benchmark.errors import DiskFull, UsageError
from benchmark.limits import check_float, check_img_size, check_int, check_seeds

DEFAULT_MODEL = "vit_base_patch16_224.augreg_in21k"
GPU_EVAL_BATCH, CPU_EVAL_BATCH = 512, 64  # images per evaluation (and trunk-caching) batch
console = Console(stderr=True, highlight=False, soft_wrap=True)
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
    """argparse, but a bad argument is one line and exit status 2."""

    def error(self, message: str) -> None:
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _overrides(pairs: list[str]) -> dict[str, dict[str, Any]]:
    per_strategy: dict[str, dict[str, Any]] = {}
    for key, value in key_values(pairs, "--set").items():
        name, sep, option = key.partition(".")
        if not sep or not option:
            raise UsageError(f"--set takes STRATEGY.KEY=VALUE, e.g. lora.r=16; got '{key}'")
        strategy_class(name)
        per_strategy.setdefault(name, {})[option] = value
    return per_strategy


def _strategy_names(text: str) -> list[str]:
    if text == "all":
        return strategies.names()
    chosen = [name.strip() for name in text.split(",") if name.strip()]
    for name in chosen:
        strategy_class(name)
    if not chosen:
        raise UsageError(f"--strategies needs at least one name. Valid: all, {', '.join(strategies.names())}")
    return list(dict.fromkeys(chosen))


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


def _train_defaults() -> dict[str, Any]:
    """TrainParams' defaults, read off its fields: TrainParams() would check its optimizer against
    timm's list, which imports torch, and `--help` and `list` answer without it."""
    return {field.name: field.default for field in dataclasses.fields(TrainParams)}


def _add_train_flags(run: Parser) -> None:
    """One flag per training hyper-parameter; unset flags leave each strategy's own default."""
    defaults = _train_defaults()
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
    run.add_argument("--dataset", default="cifar10", help=f"one of {', '.join(data.DATASETS.names())}")
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
    report = commands.add_parser(
        "report", allow_abbrev=False, help="tables and plots from the results folder"
    )
    report.add_argument("--results-dir", type=Path, default=Path("results"))
    report.add_argument("--out", type=Path, help="output folder (default RESULTS_DIR/report)")
    report.add_argument("--dataset", help="only this dataset")
    report.add_argument("--model", help="only this model")
    report.add_argument(
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
    return parser


def _add_pretrain(commands) -> None:
    """Flags left unset keep the shipped recipe's values (benchmark.pretrain.Recipe)."""
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


def command_pretrain(args: argparse.Namespace) -> int:
    from benchmark import pretrain

    given = {key: value for key, value in vars(args).items() if key in pretrain.Recipe.__dataclass_fields__}
    recipe = pretrain.Recipe(**{key: value for key, value in given.items() if value is not None})
    _check_pretrain(recipe, args.out)
    flags = [f"--{key.replace('_', '-')} {value}" for key, value in given.items() if value is not None]
    command = " ".join(["python -m benchmark pretrain", *flags, f"--out {args.out}"])
    result = pretrain.train(recipe, lambda text: console.print(text, markup=False))
    record = pretrain.save(result, recipe, args.out, command)
    console.print(
        f"wrote {args.out} ({record['bytes']:,} bytes, val top-1 {record['val_top1']:.2%}) and "
        f"{args.out.with_suffix('.json')}",
        markup=False,
    )
    return 0


def _check_pretrain(recipe: Any, out: Path) -> None:
    """A recipe of finite numbers in range, and a weights file that can be written: else one line."""
    for flag in ("steps", "batch_size", "val_images", "eval_every", "threads"):
        check_int(getattr(recipe, flag), "--" + flag.replace("_", "-"), low=1)
    check_int(recipe.seed, "--seed")
    check_int(recipe.warmup_steps, "--warmup-steps", high=recipe.steps - 1)
    check_float(recipe.weight_decay, "--weight-decay")
    if check_float(recipe.lr, "--lr") == 0:
        raise UsageError("--lr must be positive; got 0.0")
    if out.is_dir() or out.suffix != ".safetensors":
        raise UsageError(f"--out takes a .safetensors file to write; got {out}")


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


# The offline demo: every strategy adapts the glyph-pretrained tiny ViT that ships with the project to
# scikit-learn's real 8x8 digits (protocols/demo.yaml), then the probe and full fine-tuning run again from
# random initialisation as the reference that shows what pretraining buys.
PROJECT = Path(__file__).resolve().parent.parent
DEMO_CONFIG = PROJECT / "protocols" / "demo.yaml"
DEMO_WEIGHTS = PROJECT / "weights" / "glyph_vit_p8_d2_w64.safetensors"
DEMO_REFERENCE = ["--no-pretrained", "--strategies", "linear,full"]
DEMO_MAX_WORKERS = 8  # each worker holds about 1 GiB; the tiny model gains nothing from a second thread


def _demo_workers(asked: int | None) -> list[str]:
    """The run flags that share the demo's cells among local workers (the launcher's pull queue)."""
    workers = asked if asked is not None else min(len(os.sched_getaffinity(0)), DEMO_MAX_WORKERS)
    check_int(workers, "--workers", 1, 64)
    return ["--launcher", "local", "--workers", str(workers)] if workers > 1 else []


def _shown_path(path: Path) -> str:
    """Relative to the working directory when inside it (as recorded in every row), else absolute."""
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)


def _with_threads(threads: int | None, call):
    """call() with torch on this many CPU threads (None: as it is), restored after."""
    if threads is None:
        return call()
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return call()
    finally:
        torch.set_num_threads(before)


def command_demo(args: argparse.Namespace) -> int:
    """The demo's sweep on the shipped backbone, its random-initialisation reference, a look inside the
    best-validation run, then the report."""
    from benchmark import store

    for needed in (DEMO_CONFIG, DEMO_WEIGHTS):
        if not needed.is_file():
            raise UsageError(f"the demo needs {needed}, which is part of the project's repository")
    check_seeds(int_list(args.seeds, "--seeds"), "--seeds")  # before the first sweep prints its command
    common = ["--config", _shown_path(DEMO_CONFIG), "--seeds", args.seeds]
    common += ["--results-dir", str(args.results_dir), "--keep-weights"]
    workers = _demo_workers(args.workers)
    # The reference's few cells run in this process, on one thread as each worker does: starting a pool
    # of workers (each imports torch, timm and peft and plans every cell) cost about 30 s on 2 cores, more
    # than its 2 cells take to train one after the other.
    sweeps = [
        (["--weights", _shown_path(DEMO_WEIGHTS), *workers], None),
        (DEMO_REFERENCE, 1 if workers else None),
    ]
    for extra, threads in sweeps:
        run_args = ["run", *common, *extra]
        console.print("python -m benchmark " + " ".join(run_args), markup=False)
        status = _with_threads(threads, lambda run_args=run_args: main(run_args))
        if status != 0:
            return status
    runs = store.read(args.results_dir, "runs")
    ok = runs[(runs["status"] == "ok") & runs["weights_file"].notna()]
    best = ok.sort_values(["best_val_top1", "run_id"], ascending=[False, True]).iloc[0][
        "run_id"
    ]  # by validation
    status = main(["inspect", best, "--results-dir", str(args.results_dir)])
    return status or main(["report", "--results-dir", str(args.results_dir)])


def spec_from_args(args: argparse.Namespace):
    from benchmark import search
    from benchmark.sweep import SweepSpec

    if args.no_pretrained and args.weights != "hub":
        raise UsageError("--no-pretrained and --weights contradict each other; give one")
    check_img_size(args.img_size)
    data.info(args.dataset)
    train_flags = {key: getattr(args, key) for key in TRAIN_KEYS if getattr(args, key) is not None}
    return SweepSpec(
        strategies=_strategy_names(args.strategies),
        dataset=args.dataset,
        model=args.model,
        weights="none" if args.no_pretrained else args.weights,
        img_size=args.img_size,
        model_args=key_values(args.model_arg, "--model-arg"),
        seeds=check_seeds(int_list(args.seeds, "--seeds"), "--seeds"),
        train_flags=train_flags,
        overrides=_overrides(args.set),
        val_fraction=args.val_fraction,
        data_dir=args.data_dir,
        results_dir=args.results_dir,
        shard=shard(args.shard),
        search=search.parse(args.search),
    )


def _check_names(args: argparse.Namespace) -> None:
    """The names a sweep is given (strategies, `--set` strategies, dataset), checked without torch."""
    _strategy_names(args.strategies)
    _overrides(args.set)
    data.info(args.dataset)


def command_run(args: argparse.Namespace) -> int:
    from benchmark import experiment

    runs: list[experiment.Sweep] = args.sweeps  # one per dataset x model x train size of an experiment file
    for each in runs:  # a mistyped name in any sweep answers at once, before the heavy imports below
        _check_names(each.args)

    import torch

    from benchmark import distributed, progress, search, store, sweep

    args = runs[0].args  # the sweeps differ only in dataset, model and train size
    launch.check(args)
    log_options = curves.options_from(args, lambda text: console.print(text, markup=False))
    specs = [spec_from_args(each.args) for each in runs]
    if args.launcher and not launch.inside_task():  # submit workers that each run this command
        for spec in specs:
            first = search.first_stage(spec)
            for cell in first:
                sweep.plan(cell)  # bad input fails here, not in every task
            sweep.refuse_stale(first, sweep.ExecuteOptions(force=args.force, stale=args.stale))
        return launch.launch(args, runs[0].command, lambda text: console.print(text, markup=False))
    device = _device(args.device)
    # Large evaluation batches help a GPU; on a CPU, activations of 512 images at 224 px are hundreds of
    # MB per layer and allocating them costs more than it saves (measured: 1.48x slower than batch 64).
    default_eval_batch = CPU_EVAL_BATCH if device.type == "cpu" else GPU_EVAL_BATCH
    for spec in specs:
        spec.device = str(device)
        spec.eval_batch_size = default_eval_batch if args.eval_batch_size is None else args.eval_batch_size
        if spec.eval_batch_size < 1:
            raise UsageError(f"--eval-batch-size must be at least 1; got {spec.eval_batch_size}")
        spec.precision = _precision(args.precision, device)
    cells = [search.first_stage(spec) for spec in specs]  # sweep.expand, or a tuned sweep's search
    plans = [[sweep.plan(cell) for cell in each] for each in cells]  # validates every cell first
    if args.dry_run:
        _print_plans(plans, specs, as_json=args.json)
        for spec in specs:
            if spec.search and not args.json:
                console.print(search.describe(spec), markup=False)
        return 0
    if args.json:
        raise UsageError("--json goes with --dry-run")
    for each in cells:  # results of other code or libraries: refused before anything is written
        sweep.refuse_stale(each, sweep.ExecuteOptions(force=args.force, stale=args.stale))
    store.check_writable(args.results_dir)
    dist = distributed.from_environment(device)
    log = progress.for_console(console, verbose=args.verbose, enabled=dist.is_main)
    torch.backends.cuda.matmul.allow_tf32 = True
    exit_code = 0
    try:
        options = sweep.ExecuteOptions(
            force=args.force,
            stale=args.stale,
            keep_weights=args.keep_weights,
            download=not args.no_download,
            compile_model=args.compile,
            log=log_options,
            pull=launch.inside_task(),  # a launcher's worker takes the next unclaimed cell (pull.py)
        )
        for each, spec, its_cells in zip(runs, specs, cells, strict=True):
            hashes = [cell.config_hash for cell in its_cells]
            with (
                experiment.recorded(each, spec.results_dir, hashes) if dist.is_main else nullcontext() as path
            ):
                result = search.execute(spec, its_cells, device, dist, log, options)  # in stages if tuned
            counts = (
                ", ".join(f"{n} {status}" for status, n in sorted(result.statuses.items())) or "nothing run"
            )
            log(
                f"done: {counts}; {result.skipped} skipped as already done; "
                f"{result.busy} left to other processes; configuration in {path}"
                + (f"; {curves.describe(log_options, args.results_dir)}" if log_options.sinks else "")
            )
            exit_code = max(exit_code, result.exit_code)  # 130 (cancelled) > 1 (failed) > 0
            if result.exit_code == 130:
                break
    finally:
        distributed.shutdown()
    return exit_code


def _device(requested: str):
    """The torch device of --device, or a one-line UsageError."""
    from benchmark import distributed

    try:
        return distributed.resolve_device(requested)
    except (RuntimeError, ValueError, AssertionError) as error:
        first = (str(error).splitlines() or [""])[0]
        detail = "an unknown device type" if first.startswith("Expected one of") else first[:120]
        raise UsageError(
            f"--device {requested} is not usable here ({detail}); valid: auto, cpu, cuda, cuda:N"
        ) from None


def _print_plans(plans: list[list[dict]], specs: list, as_json: bool) -> None:
    if as_json:
        print(json.dumps([item for each in plans for item in each], indent=2))
        return
    for each, spec in zip(plans, specs, strict=True):
        title = "Plan (nothing is run or written)"
        if len(specs) > 1:
            size = spec.train_flags.get("train_size")
            title = f"Plan for {spec.dataset}, {spec.model}" + (f", train size {size}" if size else "")
            title += " (nothing is run or written)"
        _print_plan(each, title)


def _print_plan(plans: list[dict], title: str) -> None:
    table = Table(title=title)
    for column in ("strategy", "seed", "trainable", "excl. head", "total", "epochs", "lr", "optimizer"):
        table.add_column(column, justify="right" if column not in ("strategy", "optimizer") else "left")
    for item in plans:
        train = item["train"]
        if "error" in item:
            table.add_row(item["strategy"], str(item["seed"]), f"error: {item['error']}", "", "", "", "", "")
            continue
        table.add_row(
            item["strategy"],
            str(item["seed"]),
            f"{item['trainable_params']:,}",
            f"{item['trainable_params_excluding_head']:,}",
            f"{item['total_params']:,}",
            str(train["epochs"]),
            f"{train['lr']:g}",
            train["optimizer"],
        )
    Console(width=max(120, Console().width)).print(table)


def _precision(requested: str, device) -> str:
    """auto: bf16 autocast on a GPU, fp32 on a CPU."""
    return ("bf16" if device.type == "cuda" else "fp32") if requested == "auto" else requested


def command_speed(args: argparse.Namespace) -> int:
    from benchmark import speed, store
    from benchmark.backbone import check_model_name, create_skeleton
    from benchmark.config import make_train_params
    from benchmark.report import print_speed

    for flag, value, low in (
        ("--batch-size", args.batch_size, 1),
        ("--steps", args.steps, 1),
        ("--warmup-steps", args.warmup_steps, 0),
        ("--num-classes", args.num_classes, 1),
    ):
        if value < low:
            raise UsageError(f"{flag} must be at least {low}; got {value}")
    if args.peak_tflops is not None and args.peak_tflops <= 0:
        raise UsageError(f"--peak-tflops must be positive; got {args.peak_tflops}")
    check_model_name(args.model)
    check_img_size(args.img_size)
    model_args = key_values(args.model_arg, "--model-arg")
    create_skeleton(args.model, args.num_classes, args.img_size, model_args)  # one line if it cannot be built
    device = _device(args.device)
    spec = speed.SpeedSpec(
        strategies=_strategy_names(args.strategies),
        model=args.model,
        model_args=model_args,
        img_size=args.img_size,
        num_classes=args.num_classes,
        batch_size=args.batch_size,
        warmup_steps=args.warmup_steps,
        steps=args.steps,
        precision=_precision(args.precision, device),
        compile_model=args.compile,
        peak_tflops=args.peak_tflops,
        baselines=not args.no_baselines,
    )
    flags = {"optimizer": args.optimizer} if args.optimizer else {}
    for name in spec.strategies:  # checks the hyper-parameters (e.g. --optimizer) before timing anything
        make_train_params(name, flags, {})
    store.check_writable(args.results_dir)
    frame = speed.run_speed(spec, device, flags, lambda text: console.print(text, markup=False))
    path = speed.write(frame, args.results_dir)
    print_speed(frame, Console(width=max(120, Console().width)))
    console.print(f"wrote {path}", markup=False)
    return 0


LR_RULE = (
    "Learning rates are used as given at the run's batch size, never scaled with it. The defaults are the "
    "sources' values, which were tuned at the sources' batch sizes (the ViT paper's at 512, the PEFT "
    "protocol's at 64 to 128); change them with --lr or --set STRATEGY.lr=VALUE."
)


def _defaults_text(strategy) -> str:
    train = SimpleNamespace(**(_train_defaults() | strategy.defaults))
    return (
        f"{train.optimizer} lr {train.lr:g}, wd {train.weight_decay:g}, {train.epochs} epochs "
        f"({train.warmup_epochs:g} warm-up), batch {train.batch_size}, clip {train.clip_grad_norm:g}, "
        + ("crop + flip" if train.augment else "no augmentation")
    )


def _options_text(strategy) -> str:
    options = dataclasses.asdict(strategy.Options())
    return ", ".join(f"{key}={value}" for key, value in options.items()) or "-"


def strategy_markdown() -> str:
    """The README's strategy table: every registered strategy, with its exact trainable parameters on
    ViT-B/16 with 100 classes (counted on the meta device: no memory, no weights)."""
    from benchmark.backbone import create_skeleton
    from benchmark.prepare import prepare_model

    lines = [
        "| name | family | what trains | options | trainable (ViT-B/16, 100 classes) | effective | defaults "
        "| source |",
        "|---|---|---|---|---:|---:|---|---|",
    ]
    for name in strategies.names():
        strategy = strategy_class(name)
        skeleton = create_skeleton("vit_base_patch16_224", 100, None, {})
        prepared = prepare_model(name, strategy.Options(), skeleton)
        effective = prepared.strategy.effective_params(prepared.model)
        lines.append(
            f"| `{name}` | {strategy.family} | {strategy.description} | {_options_text(strategy)} | "
            f"{prepared.counts.trainable:,} | {effective:,} | {_defaults_text(strategy)} | {strategy.source} |"
        )
    return "\n".join(lines)


def command_list(args: argparse.Namespace) -> int:
    if args.markdown:
        print(strategy_markdown())
        return 0
    out = Console() if Console().is_terminal else Console(width=200)  # a pipe or file gets whole lines
    table = Table(title="Strategies")
    table.add_column("name", no_wrap=True)
    for column in ("family", "what it trains", "options", "training defaults", "source"):
        table.add_column(column, overflow="fold")
    for name in strategies.names():
        strategy = strategy_class(name)
        table.add_row(
            name,
            strategy.family,
            strategy.description,
            _options_text(strategy),
            _defaults_text(strategy),
            strategy.source,
        )
    out.print(table)
    out.print(LR_RULE, markup=False)
    table = Table(title="Datasets")
    for column in ("name", "description", "classes", "validation share"):
        table.add_column(column)
    for dataset in map(data.DATASETS.get, data.DATASETS.names()):
        table.add_row(
            dataset.name, dataset.description, str(dataset.num_classes), f"{dataset.default_val_fraction:.0%}"
        )
    out.print(table)
    return 0


def command_report(args: argparse.Namespace) -> int:
    from benchmark import report

    if args.out is not None and args.out.exists() and not args.out.is_dir():
        raise UsageError(f"--out {args.out} is a file; give a folder for the report")
    out = args.out or args.results_dir / "report"
    return report.main(args.results_dir, out, args.dataset, args.model, args.reference)


def command_eval(args: argparse.Namespace) -> int:
    from benchmark import kept

    device = _device(args.device)
    row = kept.find_run(args.results_dir, args.run)
    batch = CPU_EVAL_BATCH if device.type == "cpu" else GPU_EVAL_BATCH
    result = kept.evaluate_run(row, args.results_dir, device, args.dataset, args.split, args.data_dir, batch)
    if args.json:
        print(json.dumps(result))
        return 0
    print(
        f"{result['run_id']} on {result['dataset']} {result['split']} ({result['images']} images): "
        f"top-1 {result['top1']:.2%}  top-5 {result['top5']:.2%}  loss {result['loss']:.4f}  "
        f"macro F1 {result['macro_f1']:.4f}"
    )
    return 0


def command_predict(args: argparse.Namespace) -> int:
    from benchmark import kept

    row = kept.find_run(args.results_dir, args.run)
    answers, errors = kept.predict(row, args.results_dir, args.images)
    for path, top in answers:
        print(f"{path}")
        for name, probability in top:
            print(f"  {probability:7.2%}  {name}")
    for line in errors:
        console.print(f"error: {line}", markup=False)
    return 0 if not errors else (1 if answers else 2)


def command_inspect(args: argparse.Namespace) -> int:
    from benchmark import kept

    out = args.out or args.results_dir / "report"
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; give a folder for the figures")
    if (args.run is None) == (args.model is None):
        raise UsageError(
            "inspect takes a run id, or --model (with --weights) for a backbone never fine-tuned"
        )
    if args.run is not None:
        written = kept.inspect_run(
            kept.find_run(args.results_dir, args.run), args.results_dir, out, args.data_dir
        )
    else:
        from benchmark.backbone import check_model_name, create_skeleton

        check_model_name(args.model)
        check_img_size(args.img_size)
        model_args = key_values(args.model_arg, "--model-arg")
        create_skeleton(args.model, 10, args.img_size, model_args)  # one line if it cannot be built
        written = kept.inspect_backbone(
            args.model, args.weights, args.dataset, out, model_args, args.img_size, args.data_dir
        )
    for note in written.notes:
        console.print(note, markup=False)
    console.print(f"wrote {len(written.paths)} figures in {out}", markup=False)
    return 0


def _sweeps(parser: Parser, argv: list[str], args: argparse.Namespace) -> list:
    """The run's sweeps: the command line's, or one per (dataset, model, train size) of --config."""
    from benchmark import experiment

    run_parser = next(
        action.choices["run"] for action in parser._actions if isinstance(action, argparse._SubParsersAction)
    )
    return experiment.sweeps(run_parser, argv[argv.index("run") + 1 :], args)


def main(argv: list[str] | None = None) -> int:
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.command == "run":
            args.sweeps = _sweeps(parser, sys.argv[1:] if argv is None else argv, args)
        handler = {
            "run": command_run,
            "report": command_report,
            "list": command_list,
            "demo": command_demo,
            "speed": command_speed,
            "eval": command_eval,
            "predict": command_predict,
            "inspect": command_inspect,
            "pretrain": command_pretrain,
        }
        handler = handler[args.command]
        return handler(args)
    except UsageError as error:
        print(f"error: {' '.join(str(error).split())}", file=sys.stderr)  # one line, never wrapped
        return 2
    except DiskFull as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        console.print("interrupted", markup=False)
        return 130


if __name__ == "__main__":
    sys.exit(main())
