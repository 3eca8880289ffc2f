"""A tuned sweep: hyper-parameters searched on validation with the first seed, then the choice run with every seed.

Stage 1 (search): per strategy, the product of the `--search` axes runs with the first seed only.
Stage 2 (final): once every search point of a strategy has a row on disk, the point with the best
validation top-1 (`best_val_top1`; ties: fewer trainable parameters, then the grid order; never wall-clock
time, which a shared machine makes noisy) runs with every seed. The first seed's final run is the search run
of that point (same config hash), never rerun.
Nothing is chosen by looking at test. The final stage is derived from the rows on disk, so a rerun after
a kill, or a shard started after the others, continues where things stand.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from benchmark.config import (
    TRAIN_KEYS,
    RunConfig,
    make_options,
    make_train_params,
    split_overrides,
    strategy_class,
    to_jsonable,
)
from benchmark.errors import UsageError
from benchmark.parsing import parse_value
from benchmark.results import store
from benchmark.results.selection import DONE, choose, grid
from benchmark.results.status import Status
from benchmark.sweep import engine, plan, pull
from benchmark.sweep.progress import Progress

DEFAULT = "default"  # `--search default`: each strategy's own `search_space()`


def parse(pairs: list[str]) -> dict[str, tuple]:
    """`--search KEY=V1,V2,...` (repeatable) and `--search default`, as axis -> values in the given order."""
    axes: dict[str, tuple] = {}
    for pair in pairs:
        if pair.strip() == DEFAULT:
            axes[DEFAULT] = ()
            continue
        key, sep, text = pair.partition("=")
        values = tuple(parse_value(item.strip()) for item in text.split(",") if item.strip())
        if not sep or not key.strip() or not values:
            raise UsageError(f"--search takes KEY=V1,V2,... (e.g. lr=1e-4,1e-3) or 'default'; got '{pair}'")
        if len(set(map(str, values))) != len(values):
            raise UsageError(f"--search {key.strip()} lists a value twice: '{text}'")
        axes[key.strip()] = values
    return axes


def check(search: dict[str, tuple], strategies: list[str], flags: dict, overrides: dict) -> None:
    """Unknown keys, and keys that a flag or `--set` also fixes, are a UsageError naming the valid keys."""
    for key in search:
        name, sep, option = key.rpartition(".")
        if key == DEFAULT:
            for strategy in strategies:
                for axis in strategy_class(strategy).search_space():
                    _no_clash(axis, strategy, flags, overrides, f"--search default ({strategy}: {axis})")
        elif not sep and key in TRAIN_KEYS:
            for strategy in strategies:
                _no_clash(key, strategy, flags, overrides, f"--search {key}")
        elif sep and name in strategies and option in _keys(name):
            _no_clash(option, name, flags, overrides, f"--search {key}")
        else:
            per_strategy = "; ".join(f"{name}.{{{', '.join(_keys(name))}}}" for name in strategies)
            raise UsageError(
                f"unknown --search key '{key}'. Valid: 'default', a training hyper-parameter "
                f"({', '.join(TRAIN_KEYS)}), or STRATEGY.KEY for a strategy of this sweep: {per_strategy}"
            )


def _no_clash(key: str, strategy: str, flags: dict, overrides: dict, searched: str) -> None:
    """A searched value that a flag or `--set` also fixes would silently win over it: ask for one."""
    if key in overrides.get(strategy, {}):
        raise UsageError(f"--set {strategy}.{key} and {searched} both set it; give one")
    if key in flags and key not in {
        field.name for field in dataclasses.fields(strategy_class(strategy).Options)
    }:
        raise UsageError(f"--{key.replace('_', '-')} and {searched} both set {key}; give one")


def _keys(strategy: str) -> list[str]:
    """What `--search STRATEGY.KEY` may name: the strategy's options and the training hyper-parameters."""
    options = [field.name for field in dataclasses.fields(strategy_class(strategy).Options)]
    return options + [key for key in TRAIN_KEYS if key not in options]


def axes_for(search: dict[str, tuple], strategy: str) -> dict[str, tuple]:
    """This strategy's axes in the order given: 'default' is its own search_space(); a shared key (lr) and
    its own keys (lora.r) follow, and a later key replaces an earlier axis of the same name."""
    axes: dict[str, tuple] = {}
    for key, values in search.items():
        name, _, option = key.rpartition(".")
        if key == DEFAULT:
            axes |= strategy_class(strategy).search_space()
        elif name in ("", strategy):
            axes[option] = values
    return axes


@dataclasses.dataclass
class Group:
    """One strategy's search (on one dataset and model): its grid of first-seed cells."""

    strategy: str
    space: str  # JSON of the axes with the values as the cells have them (typed)
    points: list[str]  # JSON of each grid point, in grid order
    cells: list[RunConfig]  # one per point, first seed

    def tags(self, index: int, stage: str, chosen: bool) -> dict[str, Any]:
        return {
            "stage": stage,
            "search_space": self.space,
            "search_point": self.points[index],
            "chosen": chosen,
        }


def _point_cell(base: RunConfig, flags: dict, overrides: dict, point: dict) -> RunConfig:
    values = overrides.get(base.strategy, {}) | point
    option_values, train_values = split_overrides(base.strategy, values)
    return dataclasses.replace(
        base,
        options=make_options(base.strategy, option_values),
        train=make_train_params(base.strategy, flags, train_values),
    )


def _typed(cell: RunConfig, key: str) -> Any:
    option_values, _ = split_overrides(cell.strategy, {key: None})
    source = cell.options if option_values else cell.train
    return to_jsonable(getattr(source, key))


def build_groups(base_cells: list[RunConfig], search: dict, flags: dict, overrides: dict) -> list[Group]:
    """One group per strategy, from the sweep's unsharded first-seed cells."""
    groups, seen = [], set()
    for base in base_cells:
        if base.strategy in seen:
            continue
        seen.add(base.strategy)
        axes = axes_for(search, base.strategy)
        if not axes:
            raise UsageError(f"--search gives no axis for {base.strategy}; name one, e.g. lr=1e-3,1e-2")
        cells = [_point_cell(base, flags, overrides, point) for point in grid(axes)]
        typed = {key: list(dict.fromkeys(json.dumps(_typed(c, key)) for c in cells)) for key in axes}
        space = json.dumps({key: [json.loads(value) for value in values] for key, values in typed.items()})
        points = [json.dumps({key: _typed(cell, key) for key in axes}) for cell in cells]
        groups.append(Group(base.strategy, space, points, cells))
    return groups


@dataclasses.dataclass
class TunedSweep:
    """The search cells of every strategy and, once decided from the rows on disk, the final cells."""

    groups: list[Group]
    seeds: list[int]
    shard: tuple[int, int]

    def search_share(self) -> list[RunConfig]:
        cells = [cell for group in self.groups for cell in group.cells]
        return cells[self.shard[0] :: self.shard[1]]

    def search_tags(self) -> dict[str, dict[str, Any]]:
        return {
            cell.config_hash: group.tags(index, "search", False)
            for group in self.groups
            for index, cell in enumerate(group.cells)
        }

    def describe(self) -> str:
        """The dry run's account: the grid per strategy with counts; the final stage comes later."""
        lines = []
        for group in self.groups:
            axes = json.loads(group.space)
            shape = " x ".join(
                f"{key} ({len(values)}: {', '.join(map(str, values))})" for key, values in axes.items()
            )
            lines.append(
                f"search {group.strategy}: {shape} = {len(group.cells)} run(s) with seed {self.seeds[0]}"
            )
        total = sum(len(group.cells) for group in self.groups)
        share = len(self.search_share())
        lines.append(
            f"search stage: {total} run(s){f', this shard {share}' if self.shard != (0, 1) else ''}. "
            f"Final stage: each strategy's point with the best validation top-1, with seeds "
            f"{','.join(map(str, self.seeds))} ({len(self.seeds) - 1} more run(s) per strategy); "
            "which point is decided after the search."
        )
        return "\n".join(lines)

    def final_positions(self) -> list[tuple[int, int]]:
        """(group, seed) pairs of the final stage beyond the first seed; this shard's share, fixed before
        any choice is known so that shards split the stage the same way whatever is chosen."""
        pairs = [(number, seed) for number in range(len(self.groups)) for seed in self.seeds[1:]]
        return pairs[self.shard[0] :: self.shard[1]]

    def decide(self, runs: pd.DataFrame) -> tuple[dict[int, int | None], list[str]]:
        """From the rows on disk: each complete group's chosen point (None: no point trained without
        diverging), and for each incomplete group the points it still lacks."""
        chosen, missing = {}, []
        for number, group in enumerate(self.groups):
            rows = [_row_of(runs, cell.config_hash) for cell in group.cells]
            lacking = [group.points[i] for i, row in enumerate(rows) if row is None]
            if lacking:
                missing.append(f"{group.strategy} needs {', '.join(lacking)} (seed {self.seeds[0]})")
                continue
            candidates = [
                (float(row["best_val_top1"]), int(row["trainable_params"]), index)
                for index, row in enumerate(rows)
                if row["status"] == Status.OK
            ]
            chosen[number] = choose(candidates) if candidates else None
        return chosen, missing

    def final_cells(self, chosen: dict[int, int | None]) -> tuple[list[RunConfig], dict[str, dict]]:
        cells, tags = [], {}
        for number, seed in self.final_positions():
            if chosen.get(number) is None:
                continue
            group = self.groups[number]
            cell = dataclasses.replace(group.cells[chosen[number]], seed=seed)
            cells.append(cell)
            tags[cell.config_hash] = group.tags(chosen[number], "final", True)
        return cells, tags

    def mark_chosen(self, runs: pd.DataFrame, chosen: dict[int, int | None], results_dir: Path) -> None:
        """Tag the search rows with the outcome: `chosen` on the chosen point's row. A row that a plain run
        wrote for the same config is adopted into the search; one of another search is left alone."""
        for number, index in chosen.items():
            group = self.groups[number]
            for position, cell in enumerate(group.cells):
                row = _row_of(runs, cell.config_hash)
                if row is None or (row["stage"] not in ("", None) and row["search_space"] != group.space):
                    continue
                wanted = group.tags(position, "search", position == index)
                if any(row.get(key) != value for key, value in wanted.items()):
                    store.rewrite_run(results_dir, row["run_id"], wanted)


def _row_of(runs: pd.DataFrame, config_hash: str) -> pd.Series | None:
    """The cell's ok row, else its diverged one, else None (failed and cancelled rows are not answers)."""
    if runs.empty:
        return None
    rows = runs[(runs["config_hash"] == config_hash) & runs["status"].isin(DONE)]
    if rows.empty:
        return None
    ok = rows[rows["status"] == Status.OK]
    row = (ok if len(ok) else rows).iloc[-1]
    return row.where(pd.notna(row), None)


def read_runs(results_dir: Path) -> pd.DataFrame:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unreadable files are the report's to name
        return store.read(results_dir, "runs")


def tuned_sweep(spec) -> TunedSweep | None:
    """A `--search` sweep's two stages (a sweep.SweepSpec in), or None for a plain sweep."""
    if not spec.search:
        return None
    check(spec.search, spec.strategies, spec.train_flags, spec.overrides)
    base = plan.expand(dataclasses.replace(spec, shard=(0, 1), seeds=spec.seeds[:1]))
    groups = build_groups(base, spec.search, spec.train_flags, spec.overrides)
    return TunedSweep(groups, spec.seeds, spec.shard)


@dataclasses.dataclass(frozen=True)
class Stages:
    """A sweep's cells, built once: the first stage (every cell of a plain sweep, or this shard's share of a
    tuned sweep's search) and, for a tuned sweep, the search that decides its final stage."""

    first: list[RunConfig]
    tuned: TunedSweep | None

    def describe(self) -> str:
        """What a dry run says about the stages ("" for a plain sweep)."""
        return self.tuned.describe() if self.tuned else ""


def stages(spec) -> Stages:
    """The sweep's stages (a sweep.SweepSpec in): plan.expand's cells, or a tuned sweep's search first."""
    tuned = tuned_sweep(spec)
    return Stages(tuned.search_share() if tuned else plan.expand(spec), tuned)


def execute(spec, stages: Stages, device, dist, log: Progress, options):
    """Run a sweep as engine.execute does; a tuned one in both stages: the search first, then whatever of
    the final stage the rows on disk allow. Returns a sweep.SweepResult.

    A launcher's worker (`options.pull`) pulls cells, and waits for search points that other workers
    hold before it decides the final stage (pull.py)."""
    run_cells = pull.execute if options.pull else engine.execute
    tuned = stages.tuned
    if tuned is None:
        return run_cells(stages.first, device, dist, log, options)
    search_stage = functools.partial(pull.execute, wait=True) if options.pull else engine.execute
    result = search_stage(stages.first, device, dist, log, options, tuned.search_tags())
    if result.statuses[Status.CANCELLED]:
        return result
    final, tags = final_stage(tuned, spec.results_dir, dist.is_main, dist.broadcast, log)
    return result.merge(run_cells(final, device, dist, log, options, tags))


def final_stage(
    tuned: TunedSweep,
    results_dir: Path,
    is_main: bool,
    broadcast: Callable[[Any], Any],
    log: Callable[[str], None],
) -> tuple[list[RunConfig], dict[str, dict]]:
    """The final cells this process should run now, decided from the rows on disk (rank 0 reads, all
    ranks get the decision); says in one line which search points are still missing."""
    decision = None
    if is_main:
        runs = read_runs(results_dir)
        chosen, missing = tuned.decide(runs)
        tuned.mark_chosen(runs, chosen, results_dir)
        decision = chosen, missing
    chosen, missing = broadcast(decision)
    for number, index in chosen.items():
        group = tuned.groups[number]
        picked = "no point trained without diverging" if index is None else f"chose {group.points[index]}"
        log(f"{group.strategy}: {picked} by validation top-1")
    if missing:
        log(
            "final stage waits for the search: "
            + "; ".join(missing)
            + ". Rerun this command once they have rows (another shard's share, or a run that failed)"
        )
    return tuned.final_cells(chosen)
