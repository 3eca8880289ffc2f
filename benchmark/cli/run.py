"""`run`: flags and experiment files to sweeps, checked before anything heavy is imported, then run here or
handed to the launcher's workers.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import nullcontext

from rich.console import Console
from rich.table import Table

from benchmark.cli import experiment_file
from benchmark.cli.experiment import Experiment, check_names, sweep_spec
from benchmark.cli.terminal import console
from benchmark.errors import UsageError
from benchmark.results import curves
from benchmark.sweep import launch


def command_run(runs: list[experiment_file.Sweep], main: Callable[[list[str]], int]) -> int:
    """`runs`: one sweep per dataset x model x train size of an experiment file (one without a file)."""
    for each in runs:  # a mistyped name in any sweep answers at once, before the heavy imports below
        check_names(each.experiment)

    from benchmark.results import store
    from benchmark.sweep import engine, plan, search

    args = runs[0].experiment  # the sweeps differ only in dataset, model and train size
    launch.check(args)
    log_options = curves.options_from(
        args.log, args.mlflow_uri, lambda text: console.print(text, markup=False)
    )
    if args.launcher and not launch.inside_task():  # submit workers that each run this command
        for spec in [sweep_spec(each.experiment) for each in runs]:
            first = search.stages(spec).first
            plan.check(first)  # bad input fails here, not in every task
            engine.refuse_stale(first, engine.ExecuteOptions(force=args.force, stale=args.stale))
        return launch.launch(args, runs[0].command, lambda text: console.print(text, markup=False), main)
    device = resolve_device(args.device)
    specs = [sweep_spec(each.experiment, device) for each in runs]
    stages = [search.stages(spec) for spec in specs]  # built once: plan.expand, or a tuned sweep's search
    if args.dry_run:
        _print_plans([[plan.plan(cell) for cell in each.first] for each in stages], specs, as_json=args.json)
        for each in stages:
            if each.tuned and not args.json:
                console.print(each.describe(), markup=False)
        return 0
    if args.json:
        raise UsageError("--json goes with --dry-run")
    for each in stages:
        plan.check(each.first)  # bad options: one line before anything is written
    for each in stages:  # results of other code or libraries: refused before anything is written
        engine.refuse_stale(each.first, engine.ExecuteOptions(force=args.force, stale=args.stale))
    store.check_writable(args.results_dir)
    return _execute(args, list(zip(runs, specs, stages, strict=True)), device, log_options)


def _execute(args: Experiment, sweeps: list[tuple], device, log_options) -> int:
    """Run each (experiment sweep, spec, stages) in turn; the worst exit status (130 stops)."""
    import torch

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
        for each, spec, its_stages in sweeps:
            hashes = [cell.config_hash for cell in its_stages.first]
            recorded = experiment_file.recorded(each, spec.results_dir, hashes)
            with recorded if dist.is_main else nullcontext() as path:
                result = search.execute(spec, its_stages, device, dist, log, options)  # in stages if tuned
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
