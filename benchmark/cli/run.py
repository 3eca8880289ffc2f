"""`run`: flags and experiment files to sweeps, checked before anything heavy is imported, then run here or
handed to the launcher's workers.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

from rich.console import Console
from rich.table import Table

import strategies
from benchmark.cli.parser import CPU_EVAL_BATCH, GPU_EVAL_BATCH
from benchmark.cli.terminal import console
from benchmark.config import TRAIN_KEYS, strategy_class
from benchmark.data import datasets
from benchmark.errors import UsageError
from benchmark.limits import check_img_size, check_seeds
from benchmark.parsing import int_list, key_values, shard
from benchmark.results import curves
from benchmark.sweep import launch


def strategy_overrides(pairs: list[str]) -> dict[str, dict[str, Any]]:
    per_strategy: dict[str, dict[str, Any]] = {}
    for key, value in key_values(pairs, "--set").items():
        name, sep, option = key.partition(".")
        if not sep or not option:
            raise UsageError(f"--set takes STRATEGY.KEY=VALUE, e.g. lora.r=16; got '{key}'")
        strategy_class(name)
        per_strategy.setdefault(name, {})[option] = value
    return per_strategy


def strategy_names(text: str) -> list[str]:
    if text == "all":
        return strategies.names()
    chosen = [name.strip() for name in text.split(",") if name.strip()]
    for name in chosen:
        strategy_class(name)
    if not chosen:
        raise UsageError(f"--strategies needs at least one name. Valid: all, {', '.join(strategies.names())}")
    return list(dict.fromkeys(chosen))


def spec_from_args(args: argparse.Namespace, device=None):
    """The sweep's one typed description, complete when built: with the torch `device` it runs on, its
    precision and evaluation batch follow from it; without (a launcher that only plans), the defaults."""
    from benchmark.sweep import search
    from benchmark.sweep.plan import SweepSpec

    if args.no_pretrained and args.weights != "hub":
        raise UsageError("--no-pretrained and --weights contradict each other; give one")
    check_img_size(args.img_size)
    datasets.info(args.dataset)
    train_flags = {key: getattr(args, key) for key in TRAIN_KEYS if getattr(args, key) is not None}
    return SweepSpec(
        strategies=strategy_names(args.strategies),
        dataset=args.dataset,
        model=args.model,
        weights="none" if args.no_pretrained else args.weights,
        img_size=args.img_size,
        model_args=key_values(args.model_arg, "--model-arg"),
        seeds=check_seeds(int_list(args.seeds, "--seeds"), "--seeds"),
        train_flags=train_flags,
        overrides=strategy_overrides(args.set),
        val_fraction=args.val_fraction,
        data_dir=args.data_dir,
        results_dir=args.results_dir,
        shard=shard(args.shard),
        search=search.parse(args.search),
        **(_device_fields(args, device) if device is not None else {}),
    )


def _device_fields(args: argparse.Namespace, device) -> dict:
    # Large evaluation batches help a GPU; on a CPU, activations of 512 images at 224 px are hundreds of
    # MB per layer and allocating them costs more than it saves (measured: 1.48x slower than batch 64).
    default_eval_batch = CPU_EVAL_BATCH if device.type == "cpu" else GPU_EVAL_BATCH
    eval_batch_size = default_eval_batch if args.eval_batch_size is None else args.eval_batch_size
    if eval_batch_size < 1:
        raise UsageError(f"--eval-batch-size must be at least 1; got {eval_batch_size}")
    return {
        "device": str(device),
        "eval_batch_size": eval_batch_size,
        "precision": precision_for(args.precision, device),
    }


def check_names(args: argparse.Namespace) -> None:
    """The names a sweep is given (strategies, `--set` strategies, dataset), checked without torch."""
    strategy_names(args.strategies)
    strategy_overrides(args.set)
    datasets.info(args.dataset)


def command_run(args: argparse.Namespace, main: Callable[[list[str]], int]) -> int:
    from benchmark.cli import experiment

    runs: list[experiment.Sweep] = args.sweeps  # one per dataset x model x train size of an experiment file
    for each in runs:  # a mistyped name in any sweep answers at once, before the heavy imports below
        check_names(each.args)

    from benchmark.results import store
    from benchmark.sweep import engine, plan, search

    args = runs[0].args  # the sweeps differ only in dataset, model and train size
    launch.check(args)
    log_options = curves.options_from(args, lambda text: console.print(text, markup=False))
    if args.launcher and not launch.inside_task():  # submit workers that each run this command
        for spec in [spec_from_args(each.args) for each in runs]:
            first = search.first_stage(spec)
            for cell in first:
                plan.plan(cell)  # bad input fails here, not in every task
            engine.refuse_stale(first, engine.ExecuteOptions(force=args.force, stale=args.stale))
        return launch.launch(args, runs[0].command, lambda text: console.print(text, markup=False), main)
    device = resolve_device(args.device)
    specs = [spec_from_args(each.args, device) for each in runs]
    cells = [search.first_stage(spec) for spec in specs]  # plan.expand, or a tuned sweep's search
    plans = [[plan.plan(cell) for cell in each] for each in cells]  # validates every cell first
    if args.dry_run:
        _print_plans(plans, specs, as_json=args.json)
        for spec in specs:
            if spec.search and not args.json:
                console.print(search.describe(spec), markup=False)
        return 0
    if args.json:
        raise UsageError("--json goes with --dry-run")
    for each in cells:  # results of other code or libraries: refused before anything is written
        engine.refuse_stale(each, engine.ExecuteOptions(force=args.force, stale=args.stale))
    store.check_writable(args.results_dir)
    return _execute(args, list(zip(runs, specs, cells, strict=True)), device, log_options)


def _execute(args: argparse.Namespace, sweeps: list[tuple], device, log_options) -> int:
    """Run each (experiment sweep, spec, first-stage cells) in turn; the worst exit status (130 stops)."""
    import torch

    from benchmark.cli import experiment
    from benchmark.sweep import engine, progress, search
    from benchmark.train import distributed

    dist = distributed.from_environment(device)
    log = progress.for_console(console, verbose=args.verbose, enabled=dist.is_main)
    torch.backends.cuda.matmul.allow_tf32 = True
    exit_code = 0
    try:
        options = engine.ExecuteOptions(
            force=args.force,
            stale=args.stale,
            keep_weights=args.keep_weights,
            download=not args.no_download,
            compile_model=args.compile,
            log=log_options,
            pull=launch.inside_task(),  # a launcher's worker takes the next unclaimed cell (pull.py)
        )
        for each, spec, its_cells in sweeps:
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


def resolve_device(requested: str):
    """The torch device of --device, or a one-line UsageError."""
    from benchmark.train import distributed

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


def precision_for(requested: str, device) -> str:
    """auto: bf16 autocast on a GPU, fp32 on a CPU."""
    return ("bf16" if device.type == "cuda" else "fp32") if requested == "auto" else requested
