"""`list`: the registered strategies (family, what trains, options with their meanings, training defaults, source)
and datasets;
`list --markdown` is the README's strategy table with exact ViT-B/16 parameter counts.
"""

from __future__ import annotations

import argparse
import dataclasses
from types import SimpleNamespace

from rich.console import Console
from rich.table import Table

import strategies
from benchmark.cli.experiment import train_defaults
from benchmark.config import strategy_class
from benchmark.data import datasets

LR_RULE = (
    "Learning rates are used as given at the run's batch size, never scaled with it. The defaults are the "
    "sources' values, which were tuned at the sources' batch sizes (the ViT paper's at 512, the PEFT "
    "protocol's at 64 to 128); change them with --lr or --set STRATEGY.lr=VALUE."
)


def _defaults_text(strategy) -> str:
    train = SimpleNamespace(**(train_defaults() | strategy.defaults))
    return (
        f"{train.optimizer} lr {train.lr:g}, wd {train.weight_decay:g}, {train.epochs} epochs "
        f"({train.warmup_epochs:g} warm-up), batch {train.batch_size}, clip {train.clip_grad_norm:g}, "
        + ("crop + flip" if train.augment else "no augmentation")
    )


def _options_text(strategy) -> str:
    options = dataclasses.asdict(strategy.Options())
    return ", ".join(f"{key}={value}" for key, value in options.items()) or "-"


def _options_help_text(strategy) -> str:
    """Each option with its default and meaning (the field's `help` metadata), one a line."""
    defaults = strategy.Options()
    lines = [
        f"{field.name}={getattr(defaults, field.name)}: {field.metadata['help']}"
        for field in dataclasses.fields(defaults)
    ]
    return "\n".join(lines) or "-"


def strategy_markdown() -> str:
    """The README's strategy table: every registered strategy, with its exact trainable parameters on
    ViT-B/16 with 100 classes (counted on the meta device: no memory, no weights)."""
    from benchmark.train.prepare import prepare_model
    from benchmark.weights.backbone import create_skeleton

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
            _options_help_text(strategy),
            _defaults_text(strategy),
            strategy.source,
        )
    out.print(table)
    out.print(LR_RULE, markup=False)
    table = Table(title="Datasets")
    for column in ("name", "description", "classes", "validation share"):
        table.add_column(column)
    for dataset in map(datasets.DATASETS.get, datasets.DATASETS.names()):
        table.add_row(
            dataset.name, dataset.description, str(dataset.num_classes), f"{dataset.default_val_fraction:.0%}"
        )
    out.print(table)
    return 0
