"""The commands besides `run` and `list`: `demo`, `speed`, `pretrain`, `report`, and `eval`, `predict`,
`inspect` on a kept run. Each checks its input (one line, exit 2), then imports what does the work.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from benchmark.cli.experiment import CPU_EVAL_BATCH, GPU_EVAL_BATCH, precision_for, strategy_names
from benchmark.cli.parser import DEMO_MAX_WORKERS
from benchmark.cli.run import resolve_device
from benchmark.cli.terminal import console
from benchmark.errors import UsageError
from benchmark.limits import check_float, check_img_size, check_int, check_seeds
from benchmark.parsing import int_list, key_values
from benchmark.paths import PROJECT
from benchmark.results.status import Status


def command_pretrain(args: argparse.Namespace) -> int:
    from benchmark.train import pretrain

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


# The offline demo: every strategy adapts the glyph-pretrained tiny ViT that ships with the project to
# scikit-learn's real 8x8 digits (protocols/demo.yaml), then the probe and full fine-tuning run again from
# random initialisation as the reference that shows what pretraining buys.
DEMO_CONFIG = PROJECT / "protocols" / "demo.yaml"


DEMO_WEIGHTS = PROJECT / "weights" / "glyph_vit_p8_d2_w64.safetensors"


DEMO_REFERENCE = ["--no-pretrained", "--strategies", "linear,full"]


def _demo_workers(asked: int | None) -> list[str]:
    """The run flags that share the demo's cells among local workers (the launcher's pull queue)."""
    workers = asked if asked is not None else min(len(os.sched_getaffinity(0)), DEMO_MAX_WORKERS)
    check_int(workers, "--workers", 1, 64)
    return ["--launcher", "local", "--workers", str(workers)] if workers > 1 else []


def _shown_path(path: Path) -> str:
    """Relative to the working directory when inside it (as recorded in every row), else absolute."""
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)


def _with_threads(threads: int | None, call: Callable[[], int]) -> int:
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


def command_demo(args: argparse.Namespace, main: Callable[[list[str]], int]) -> int:
    """The demo's sweep on the shipped backbone, its random-initialisation reference, a look inside the
    best-validation run, then the report: each a command of its own, run by `main`."""
    from benchmark.results import store

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
    ok = runs[(runs["status"] == Status.OK) & runs["weights_file"].notna()]
    best = ok.sort_values(["best_val_top1", "run_id"], ascending=[False, True]).iloc[0][
        "run_id"
    ]  # by validation
    status = main(["inspect", best, "--results-dir", str(args.results_dir)])
    return status or main(["report", "--results-dir", str(args.results_dir)])


def command_speed(args: argparse.Namespace) -> int:
    from benchmark.config import make_train_params
    from benchmark.report.build import print_speed
    from benchmark.results import store
    from benchmark.train import speed
    from benchmark.weights.backbone import check_model_name, create_skeleton

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
    device = resolve_device(args.device)
    spec = speed.SpeedSpec(
        strategies=strategy_names(args.strategies),
        model=args.model,
        model_args=model_args,
        img_size=args.img_size,
        num_classes=args.num_classes,
        batch_size=args.batch_size,
        warmup_steps=args.warmup_steps,
        steps=args.steps,
        precision=precision_for(args.precision, device),
        compile_model=args.compile,
        peak_tflops=args.peak_tflops,
        baselines=not args.no_baselines,
    )
    flags = {"optimizer": args.optimizer} if args.optimizer else {}
    for name in spec.strategies:  # checks the hyper-parameters (e.g. --optimizer) before timing anything
        make_train_params(name, flags | {"batch_size": args.batch_size}, {})
    store.check_writable(args.results_dir)
    frame = speed.run_speed(spec, device, flags, lambda text: console.print(text, markup=False))
    path = speed.write(frame, args.results_dir)
    print_speed(frame, Console(width=max(120, Console().width)))
    console.print(f"wrote {path}", markup=False)
    return 0


def command_report(args: argparse.Namespace) -> int:
    from benchmark.report import build
    from benchmark.results import store

    if args.out is not None and args.out.exists() and not args.out.is_dir():
        raise UsageError(f"--out {args.out} is a file; give a folder for the report")
    out = args.out or store.report_path(args.results_dir)
    return build.main(args.results_dir, out, args.dataset, args.model, args.reference)


def command_eval(args: argparse.Namespace) -> int:
    from benchmark.kept import actions

    device = resolve_device(args.device)
    row = actions.find_run(args.results_dir, args.run)
    batch = CPU_EVAL_BATCH if device.type == "cpu" else GPU_EVAL_BATCH
    result = actions.evaluate_run(
        row, args.results_dir, device, args.dataset, args.split, args.data_dir, batch
    )
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
    from benchmark.kept import actions

    row = actions.find_run(args.results_dir, args.run)
    answers, errors = actions.predict(row, args.results_dir, args.images)
    for path, top in answers:
        print(f"{path}")
        for name, probability in top:
            print(f"  {probability:7.2%}  {name}")
    for line in errors:
        console.print(f"error: {line}", markup=False)
    return 0 if not errors else (1 if answers else 2)


def command_inspect(args: argparse.Namespace) -> int:
    from benchmark.kept import actions
    from benchmark.results import store

    out = args.out or store.report_path(args.results_dir)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; give a folder for the figures")
    if (args.run is None) == (args.model is None):
        raise UsageError(
            "inspect takes a run id, or --model (with --weights) for a backbone never fine-tuned"
        )
    if args.run is not None:
        written = actions.inspect_run(
            actions.find_run(args.results_dir, args.run), args.results_dir, out, args.data_dir
        )
    else:
        from benchmark.weights.backbone import check_model_name, create_skeleton

        check_model_name(args.model)
        check_img_size(args.img_size)
        model_args = key_values(args.model_arg, "--model-arg")
        create_skeleton(args.model, 10, args.img_size, model_args)  # one line if it cannot be built
        written = actions.inspect_backbone(
            args.model, args.weights, args.dataset, out, model_args, args.img_size, args.data_dir
        )
    for note in written.notes:
        console.print(note, markup=False)
    console.print(f"wrote {len(written.paths)} figures in {out}", markup=False)
    return 0
