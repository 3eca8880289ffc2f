"""A tuned sweep (`run --search`): the grid on validation with the first seed, the choice with every seed,
resumable and shardable, and its report (terminal, summary.md, summary.tex, search plot)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from benchmark import cli
from benchmark.report import build, search_figure, statistics
from benchmark.results import identity, store
from tests.helpers import TINY_ARGS

# Its module fixtures are computed once: every test of this file runs on one pytest-xdist worker.
pytestmark = pytest.mark.xdist_group("test_search")

# Two strategies with two learning rates each, two seeds: 4 search runs, then 2 final runs (seed 1).
# The learning rates are far apart, so that on this data their validation accuracies differ (a tie
# would be broken by training time, which is not reproducible).
LRS = {"linear": (1e-3, 0.3), "bitfit": (1e-4, 1e-2)}
SEARCH = [f"{name}.lr={','.join(map(str, values))}" for name, values in LRS.items()]


def tuned_argv(results: Path, *extra: str) -> list[str]:
    argv = ["run", "--strategies", ",".join(LRS), "--dataset", "synthetic", *TINY_ARGS, "--no-pretrained"]
    argv += ["--epochs", "1", "--device", "cpu", "--seeds", "0,1", "--results-dir", str(results)]
    argv += ["--data-dir", str(results.parent / "data")]
    return argv + [item for key in SEARCH for item in ("--search", key)] + list(extra)


def ok_runs(results: Path) -> pd.DataFrame:
    runs = store.read(results, "runs")
    return runs[runs["status"] == "ok"]


@pytest.fixture(scope="module")
def tuned(tmp_path_factory) -> Path:
    """An uninterrupted tuned sweep's results folder."""
    results = tmp_path_factory.mktemp("tuned") / "results"
    assert cli.main(tuned_argv(results)) == 0
    return results


def test_search_picks_best_validation_then_runs_every_seed(tuned):
    runs = ok_runs(tuned)
    assert len(runs) == 6 and runs["config_hash"].is_unique  # 2 x 2 search + 2 x 1 further seed
    for name, lrs in LRS.items():
        searched = runs[(runs["strategy"] == name) & (runs["stage"] == "search")]
        assert sorted(searched["lr"]) == sorted(lrs) and set(searched["seed"]) == {0}
        assert searched["best_val_top1"].nunique() == 2, "the test's learning rates should not tie"
        best = searched.loc[searched["best_val_top1"].idxmax()]
        final = runs[(runs["strategy"] == name) & (runs["lr"] == best["lr"])]
        assert sorted(final["seed"]) == [0, 1]  # seed 0's final run is the search run itself
        assert list(final.sort_values("seed")["stage"]) == ["search", "final"]
        assert set(final["chosen"]) == {True}
        assert list(searched.loc[searched["lr"] != best["lr"], "chosen"]) == [False]
        assert json.loads(best["search_space"]) == {"lr": list(lrs)}
        assert json.loads(best["search_point"]) == {"lr": best["lr"]}


def _tuned_rows(markdown: str) -> dict[str, list[str]]:
    """The tuned table of summary.md: strategy -> its cells, without bold marks."""
    section = markdown.split("# Tuned sweep")[1]
    rows = [line.strip("|").split("|") for line in section.splitlines() if line.startswith("| ")]
    return {cells[0].strip(): [cell.strip().strip("*") for cell in cells] for cells in rows[1:]}


def test_report_shows_the_choice_and_the_seed_mean_and_std(tuned, capsys):
    assert cli.main(["report", "--results-dir", str(tuned)]) == 0
    terminal = capsys.readouterr().out
    build = tuned / "report"
    rows = _tuned_rows((build / "summary.md").read_text())
    runs = ok_runs(tuned)
    for name in LRS:
        chosen = runs[(runs["strategy"] == name) & runs["chosen"]]
        lr, tests = chosen["lr"].iloc[0], chosen["test_top1"].to_numpy() * 100
        val = chosen.loc[chosen["stage"] == "search", "best_val_top1"].iloc[0] * 100
        low, high = stats.bootstrap(
            (tests,),
            np.mean,
            n_resamples=statistics.RESAMPLES,
            method=statistics.METHOD,
            rng=np.random.default_rng(statistics.SEED),
        ).confidence_interval
        expected = f"{tests.mean():.2f} ± {np.std(tests, ddof=1):.2f} [{low:.2f}, {high:.2f}]"
        assert rows[name] == [name, f"lr={lr:g}", "2/2", f"{val:.2f}", "2", expected]
        assert expected in terminal and f"lr={lr:g}" in terminal
    assert (build / "synthetic__vit_tiny_patch16_224__search.png").stat().st_size > 0


def test_summary_tex_is_a_booktabs_tabular(tuned):
    if not (tuned / "report" / "summary.tex").exists():
        assert cli.main(["report", "--results-dir", str(tuned)]) == 0
    tex = (tuned / "report" / "summary.tex").read_text().split("% Tuned sweep\n")[1]  # after the summary
    lines = tex.strip().splitlines()
    assert lines[0] == r"\begin{tabular}{llrrrr}" and lines[-1] == r"\end{tabular}"
    assert lines[1] == r"\toprule" and lines[3] == r"\midrule" and lines[-2] == r"\bottomrule"
    assert len(lines) == 5 + 1 + len(LRS)  # the frame, the header, one row per strategy
    assert all(line.endswith(r"\\") for line in lines[2:3] + lines[4:-2])
    assert all(line.count("&") == 5 for line in lines[2:3] + lines[4:-2])
    assert r"top-1 \%" in tex and r"$\pm$" in tex and "_" not in tex.replace(r"\_", "")
    # Bold as in summary.md: the best validation, and the test top-1 of the best and of those not worse.
    markdown = (tuned / "report" / "summary.md").read_text().split("# Tuned sweep")[1]
    assert len(re.findall(r"\\textbf\{", tex)) == markdown.count("**") // 2 >= 2


def test_shards_then_rerun_give_the_same_table_without_duplicates(tuned, tmp_path, capsys):
    results = tmp_path / "results"
    # Shard 0 of 2 runs half the search (one point per strategy): no final stage yet, and it says why.
    assert cli.main(tuned_argv(results, "--shard", "0/2")) == 0
    waiting = [line for line in capsys.readouterr().err.splitlines() if "final stage waits" in line]
    assert len(waiting) == 1
    assert 'linear needs {"lr": 0.3} (seed 0)' in waiting[0] and 'bitfit needs {"lr": 0.01}' in waiting[0]
    assert len(ok_runs(results)) == 2
    # Shard 1 completes the search and runs its share of the final stage; then the whole command resumes.
    assert cli.main(tuned_argv(results, "--shard", "1/2")) == 0
    assert cli.main(tuned_argv(results)) == 0
    assert "done: 1 ok; 5 skipped" in capsys.readouterr().err
    assert cli.main(tuned_argv(results)) == 0  # nothing left
    assert "done: nothing run; 6 skipped" in capsys.readouterr().err
    runs, reference = ok_runs(results), ok_runs(tuned)
    assert len(store.read(results, "runs")) == 6 and runs["config_hash"].is_unique
    columns = ["config_hash", "stage", "chosen", "best_val_top1", "test_top1"]
    assert runs[columns].sort_values("config_hash").to_numpy().tolist() == (
        reference[columns].sort_values("config_hash").to_numpy().tolist()
    )
    assert _final_table(results) == _final_table(tuned)


def _copies(runs: pd.DataFrame, started: str, **values: object) -> pd.DataFrame:
    """The rows as other cells' runs started on `started` (run ids start with the time) would have written
    them (a cell's later row supersedes its earlier one, so each copy is a cell of its own)."""
    hashes = started + runs["config_hash"].str[8:]
    return runs.assign(run_id=started + runs["run_id"].str[8:], config_hash=hashes, **values)


def test_tuned_tables_never_mix_library_or_code_versions(tuned, tmp_path):
    """Rows of another torch minor form a tuned table and a search figure of their own; search rows of an
    older code version are never chosen from, however good their validation accuracy."""
    results = shutil.copytree(tuned, tmp_path / "results")
    runs = store.read(tuned, "runs")
    other_torch = _copies(runs, "29991231", torch_version="1.13.1", test_top1=0.01)
    searched = runs[runs["stage"] == "search"]
    older = _copies(searched, "20000101", code_version="000000000000", best_val_top1=1.0)
    # Each strategy's other learning rate wins the older code's search, by far.
    swapped = searched.groupby("strategy")["search_point"].transform(
        lambda points: points.iloc[::-1].to_numpy()
    )
    older = older.assign(search_point=swapped.to_numpy())
    for _, row in pd.concat([other_torch, older]).iterrows():
        store.write_atomic(row.to_frame().T.infer_objects(), store.run_path(results, row["run_id"]), "runs")
    tables = build.tuned_tables(build.tuned(store.read(results, "runs")))
    now = identity.major_minor(torch.__version__)
    assert [table.title.split(" · ")[2].split(",")[0] for table in tables] == ["torch 1.13", f"torch {now}"]
    assert tables[1].rows == _final_table(tuned)[0]  # as if the other rows were not there
    assert {row[-1].split(" ")[0] for row in tables[0].rows} == {"1.00"}  # test top-1 1% in every seed
    figures = search_figure.render_search(
        build.search_points(store.read(results, "runs")), tmp_path / "report"
    )
    assert len(figures) == 2 and all(path.exists() for path in figures)


def _final_table(results: Path) -> list[list[str]]:
    """The report's tuned table (without drawing the plots)."""
    return [table.rows for table in build.tuned_tables(build.tuned(store.read(results, "runs")))]


def test_dry_run_prints_the_grid_and_writes_nothing(tmp_path, capsys):
    argv = tuned_argv(tmp_path / "results", "--search", "weight_decay=0,1e-4", "--dry-run")
    assert cli.main(argv) == 0
    err = capsys.readouterr().err
    assert "search linear: lr (2: 0.001, 0.3) x weight_decay (2: 0.0, 0.0001) = 4 run(s) with seed 0" in err
    assert "search stage: 8 run(s)" in err and "decided after the search" in err
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--search", "foo=1,2"], "unknown --search key 'foo'. Valid: 'default', a training hyper-parameter"),
        (["--search", "linear.r=4,8"], "unknown --search key 'linear.r'"),
        (["--search", "lr"], "--search takes KEY=V1,V2,..."),
        (["--search", "epochs=1,1"], "--search epochs lists a value twice"),
        (["--search", "epochs=1,2", "--epochs", "3"], "--epochs and --search epochs both set epochs"),
        (["--search", "default", "--set", "bitfit.lr=0.1"], "--set bitfit.lr and --search"),
    ],
)
def test_bad_search_is_one_line_exit_2(tmp_path, capsys, extra, message):
    argv = tuned_argv(tmp_path / "results", *extra)
    assert cli.main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    if "foo=1,2" in extra:  # the valid keys are named
        assert "(epochs, batch_size, lr," in lines[0] and "linear.{epochs," in lines[0]
    assert not (tmp_path / "results").exists()


def test_default_uses_each_strategy_search_space(tmp_path, capsys):
    argv = [
        "run",
        "--strategies",
        "full,linear,lora",
        "--dataset",
        "synthetic",
        *TINY_ARGS,
        "--no-pretrained",
    ]
    assert cli.main([*argv, "--search", "default", "--dry-run", "--results-dir", str(tmp_path / "r")]) == 0
    err = capsys.readouterr().err
    # strategies/base.py: SGD grid (ViT paper) for momentum-SGD full fine-tuning, AdamW grid for LoRA;
    # the linear probe declares its own grid for its Muon optimiser (strategies/linear.py).
    assert "search full: lr (4: 0.001, 0.003, 0.01, 0.03) = 4 run(s)" in err
    assert "search linear: lr (3: 0.03, 0.1, 0.3) = 3 run(s)" in err
    assert "search lora: lr (4: 0.0001, 0.0003, 0.001, 0.003) = 4 run(s)" in err


@pytest.mark.slow
def test_a_sigkill_in_the_middle_then_a_rerun_give_the_uninterrupted_table(tmp_path):
    import signal
    import time

    from tests.helpers import start_cli

    killed, clean = tmp_path / "killed" / "results", tmp_path / "clean" / "results"
    process = start_cli(*tuned_argv(killed, "--epochs", "4"), cwd=tmp_path)
    deadline = time.monotonic() + 240
    while len(list((killed / "runs").glob("[!.]*.parquet"))) < 2:  # killed once two runs are written
        assert process.poll() is None, "the sweep ended before it could be killed"
        assert time.monotonic() < deadline, "no runs appeared"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert len(store.read(killed, "runs")) < 6, "killed in the middle"
    assert cli.main(tuned_argv(killed, "--epochs", "4")) == 0
    assert cli.main(tuned_argv(clean, "--epochs", "4")) == 0
    runs = store.read(killed, "runs")
    assert len(runs) == 6 and runs["config_hash"].is_unique and (runs["status"] == "ok").all()
    assert _final_table(killed) == _final_table(clean)
