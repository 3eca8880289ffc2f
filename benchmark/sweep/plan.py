"""A sweep planned: the cells a `run` command asks for (strategies x seeds, with each strategy's defaults
under the user's flags), and each cell checked on a meta-device skeleton before anything runs.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from benchmark.config import RunConfig, make_options, make_train_params, split_overrides, strategy_class
from benchmark.data import datasets
from benchmark.errors import UsageError
from benchmark.train.prepare import prepare_model
from benchmark.weights import backbone as backbones


@dataclasses.dataclass(frozen=True)
class SweepSpec:
    """What the user asked for, before expansion into cells: built once (`cli.experiment.sweep_spec`), never changed."""

    strategies: list[str]
    dataset: str
    model: str
    weights: str = "hub"  # "hub", "none" or a file path
    img_size: int | None = None
    model_args: dict[str, Any] = dataclasses.field(default_factory=dict)
    seeds: list[int] = dataclasses.field(default_factory=lambda: [0])
    train_flags: dict[str, Any] = dataclasses.field(default_factory=dict)  # only flags the user gave
    overrides: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)  # --set, per strategy
    precision: str = "fp32"
    device: str = "cpu"
    eval_batch_size: int = 512  # images per evaluation batch: speed only, not in the config hash
    val_fraction: float | None = None
    data_dir: Path = Path("data")
    results_dir: Path = Path("results")
    shard: tuple[int, int] = (0, 1)
    # --search: axis -> values ("lr", "lora.r"; "default" for each strategy's search_space()), see search.py
    search: dict[str, tuple] = dataclasses.field(default_factory=dict)


def expand(spec: SweepSpec) -> list[RunConfig]:
    """Every (strategy, seed) cell with its resolved options and hyper-parameters; this shard's share."""
    dataset = datasets.info(spec.dataset)
    backbones.check_model_name(spec.model)
    for name in list(spec.overrides):
        strategy_class(name) if name in spec.strategies else _not_in_sweep(name, spec.strategies)
    weights_sha = backbones.weights_fingerprint(spec.weights)
    val_fraction = dataset.default_val_fraction if spec.val_fraction is None else spec.val_fraction
    if not 0 < val_fraction < 1:
        raise UsageError(f"--val-fraction must be between 0 and 1 (exclusive); got {val_fraction}")
    cells = []
    for name in spec.strategies:
        strategy = strategy_class(name)
        option_values, train_values = split_overrides(name, spec.overrides.get(name, {}))
        options = make_options(name, option_values)
        train = make_train_params(name, spec.train_flags, train_values)
        pretrained = strategy.uses_pretrained and spec.weights != "none"
        for seed in spec.seeds:
            cells.append(
                RunConfig(
                    strategy=name,
                    options=options,
                    dataset=spec.dataset,
                    model=spec.model,
                    model_args=tuple(sorted(spec.model_args.items())),
                    weights=spec.weights if pretrained else "none",
                    weights_sha256=weights_sha if pretrained else "",
                    img_size=spec.img_size,
                    seed=seed,
                    train=train,
                    precision=spec.precision,
                    val_fraction=val_fraction,
                    device=spec.device,
                    eval_batch_size=spec.eval_batch_size,
                    data_dir=spec.data_dir,
                    results_dir=spec.results_dir,
                )
            )
    index, count = spec.shard
    return cells[index::count]


def _not_in_sweep(name: str, chosen: list[str]) -> None:
    strategy_class(name)  # an unknown name gets the registry's error
    raise UsageError(f"--set names strategy '{name}', which is not in --strategies ({', '.join(chosen)})")


def check(cells: list[RunConfig]) -> None:
    """Bad options in any cell are a UsageError before anything runs. Each distinct model and strategy
    setting is planned once: the seeds of a cell share it, and only a dry run needs every cell's plan."""
    seen = set()
    for cell in cells:
        setting = (
            cell.strategy,
            repr(cell.options),
            cell.model,
            cell.model_args,
            cell.img_size,
            cell.dataset,
        )
        if setting not in seen:
            seen.add(setting)
            plan(cell)


def plan(cell: RunConfig) -> dict[str, Any]:
    """The cell with its parameter counts, from the architecture on the meta device: no data, no weights.

    Bad options are a UsageError; any other error in a strategy is shown in the plan and, when the
    cell runs, recorded as a failed row.
    """
    skeleton = backbones.create_skeleton(
        cell.model, datasets.info(cell.dataset).num_classes, cell.img_size, dict(cell.model_args)
    )
    item = {
        "strategy": cell.strategy,
        "dataset": cell.dataset,
        "model": cell.model,
        "seed": cell.seed,
        "options": dataclasses.asdict(cell.options),
        "weights": cell.weights,
        "train": dataclasses.asdict(cell.train),
        "config_hash": cell.config_hash,
    }
    try:
        counts = prepare_model(cell.strategy, cell.options, skeleton).counts
    except ValueError as error:
        raise UsageError(f"{cell.strategy}: {error}") from None
    except Exception as error:  # a bug in a strategy: the sweep goes on without it
        return item | {"error": f"{type(error).__name__}: {error}"}
    return item | {
        "trainable_params": counts.trainable,
        "total_params": counts.total,
        "trainable_params_excluding_head": counts.trainable_excluding_head,
        "head_params": counts.head,
    }
