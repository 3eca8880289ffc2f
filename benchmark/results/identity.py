"""What identifies a result beyond its configuration: the code that trained it and the libraries it ran on.

`config_hash` names a cell (strategy, options, data, model, hyper-parameters, seed); it leaves the code out.
A fix to a strategy or to the training loop, or a peft upgrade (OFT changed meaning between peft
versions), changes the numbers under the same hash. A result's identity is therefore

- `code_version`: a short hash of the code that decides the trained numbers for this strategy: the
  strategy's module, the `strategies` modules it imports (transitively: `_peft.py`, `base.py`, ...) and
  the runner's training modules (`TRAINING_MODULES`, each with the reason it is there). Each module is
  hashed as its syntax tree with docstrings removed (comments are not in the tree), so that editing a
  comment or a docstring keeps every result current, and
- `libraries`: torch, timm and peft as major.minor. Their minor releases change behaviour (peft's OFT
  changed its parametrisation in a minor release; timm's defaults and torch's kernels change in minor
  releases), while patch releases are bug fixes that keep meaning, and a local build tag (`+cu121`) is
  the same library on another device: a patch upgrade does not throw away a sweep.

`run` treats a cell whose answer has another identity as stale (`--stale refuse|rerun|keep`); `report`
never averages rows of different identities (`separate`).
"""

from __future__ import annotations

import ast
import functools
import hashlib
import sys
from pathlib import Path

import pandas as pd

from benchmark.paths import PROJECT
from benchmark.provenance import provenance
from benchmark.results.code_equivalents import EQUIVALENT

# The benchmark modules that decide the trained numbers of every strategy, and why. Left out: measure
# (costs only), config (every value it resolves is in config_hash already), sweep/search/pull (which cells
# run and what is written; the seed is set by training.seed_everything), store, columns, report, cli.
TRAINING_MODULES = {
    "benchmark.train.runner": "the loop: epochs, validation-based selection, test evaluation, early stop",
    "benchmark.train.step": "the optimiser step, optimiser, schedule, step plan, seeds and random streams",
    "benchmark.train.optimizer_groups": "which parameters decay and their learning-rate ratios",
    "benchmark.train.inputs": "what the trained module is fed: frozen-trunk outputs, evaluation batches",
    "benchmark.data.batches": "batches: augmentation, resizing, normalisation, batch order",
    "benchmark.data.datasets": "the splits: validation held out, training subsets, decoding",
    "benchmark.train.metrics": "the metrics (top-1, top-5, loss, macro F1)",
    "benchmark.train.prepare": "a strategy applied to a backbone, and the frozen trunk split off",
    "benchmark.train.checkpoint": "what a resumed run restores",
    "benchmark.weights.backbone": "model creation, weight loading, position-embedding resampling, input statistics",
    "benchmark.weights.google_npz": "Google .npz weights converted to timm's layout",
    "benchmark.weights.hf_weights": "transformers ViT weights converted to timm's layout",
    "benchmark.train.distributed": "the reductions across processes",
}
LIBRARIES = ("torch", "timm", "peft")
CURRENT_OF = {old: new for new, olds in EQUIVALENT.items() for old in olds}  # old version -> current
HASH_CHARACTERS = 12  # of the SHA-256 hex digest: 48 bits, no collision between code versions in practice


ROOT = PROJECT  # the folder holding `benchmark` and `strategies`


def _path(module: str) -> Path:
    """The file of a module: where it was loaded from (a strategy registered outside this checkout, e.g.
    by a test), else the checkout's, found without importing it."""
    loaded = getattr(sys.modules.get(module), "__file__", None)
    return Path(loaded) if loaded else ROOT.joinpath(*module.split(".")).with_suffix(".py")


@functools.cache
def _tree(module: str) -> ast.Module:
    return ast.parse(_path(module).read_text(encoding="utf-8"))


def normalised_source(source: str) -> str:
    """The source as its syntax tree says it, docstrings removed: comments, blank lines, formatting and
    docstrings do not change it. `ast.unparse` rather than `ast.dump`, whose format changes between Python
    versions (3.13 leaves out empty fields)."""
    tree = ast.parse(source)
    scopes = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    for node in ast.walk(tree):
        first = node.body[0] if isinstance(node, scopes) and node.body else None
        if (
            isinstance(first, ast.Expr)
            and isinstance(first.value, ast.Constant)
            and isinstance(first.value.value, str)
        ):
            node.body = node.body[1:] or [ast.Pass()]
    return ast.unparse(tree)


def source_hash(source: str) -> str:
    """A short hash of one module's normalised source."""
    return hashlib.sha256(normalised_source(source).encode()).hexdigest()[:HASH_CHARACTERS]


def _strategy_imports(module: str) -> set[str]:
    """The `strategies` modules `module` imports (any import statement, wherever it is: a function-level
    import decides numbers too). `from strategies import register` names the package, which only registers
    strategies: it is not followed."""
    found = set()
    for node in ast.walk(_tree(module)):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = (
                (node.module or "")
                if node.level == 0
                else ".".join(filter(None, ["strategies", node.module]))
            )
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        found |= {name for name in names if name.startswith("strategies.") and _path(name).is_file()}
    return found


def strategy_modules(module: str) -> list[str]:
    """`module` and every `strategies` module it imports, transitively, sorted."""
    seen, todo = set(), [module]
    while todo:
        current = todo.pop()
        if current not in seen:
            seen.add(current)
            todo += sorted(_strategy_imports(current) - seen)
    return sorted(seen)


@functools.cache
def _module_hash(module: str) -> str:
    """`source_hash` of a module's file, once per process (the training modules are shared by every strategy)."""
    return source_hash(_path(module).read_text(encoding="utf-8"))


@functools.cache
def code_version(strategy: str) -> str:
    """The hash of the code that decides a registered strategy's trained numbers (see the module's text)."""
    import strategies

    modules = sorted({*strategy_modules(strategies.get(strategy).__module__), *TRAINING_MODULES})
    digest = hashlib.sha256()
    for module in modules:
        digest.update(f"{module}\n{_module_hash(module)}\n".encode())
    return digest.hexdigest()[:HASH_CHARACTERS]


def canonical(version: object) -> object:
    """The code version a recorded one trains the same numbers as: a version listed in `EQUIVALENT` (code
    moved or renamed without changing what it computes) stands for the version it is listed under."""
    return CURRENT_OF.get(version, version) if isinstance(version, str) else version


def major_minor(version: object) -> str:
    """'2.14.1+cu121' -> '2.14'; anything unreadable (a row without the column) -> 'unknown'."""
    if not isinstance(version, str) or not version:
        return "unknown"
    return ".".join(version.split("+")[0].split(".")[:2])


def libraries(row: pd.Series | dict) -> str:
    """The row's library identity, e.g. 'torch 2.14, timm 1.0, peft 0.21'."""
    return ", ".join(f"{name} {major_minor(row.get(f'{name}_version'))}" for name in LIBRARIES)


def current_libraries() -> str:
    return libraries(provenance())


def why_stale(row: pd.Series | dict, strategy: str) -> str | None:
    """Why an answer row is not of this checkout and these libraries ('code changed', 'peft 0.21 -> 0.22'),
    or None when it is current. A row written before code versions were recorded counts as older code."""
    now = {name: major_minor(version) for name, version in _current_versions().items()}
    changes = [
        f"{name} {major_minor(row.get(f'{name}_version'))} -> {now[name]}"
        for name in LIBRARIES
        if major_minor(row.get(f"{name}_version")) != now[name]
    ]
    if canonical(row.get("code_version")) != code_version(strategy):
        changes.insert(0, "code changed")
    return ", ".join(changes) or None


def _current_versions() -> dict[str, str]:
    return {name: provenance()[f"{name}_version"] for name in LIBRARIES}


# --- the report: never average across identities ---------------------------------------------------------

OLDER_CODE = "older code version"


def separate(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs with `libraries` (the library identity where the results hold several, else "": a part of
    the report's block key) and `older_code` (the row's code version is not the newest of its strategy in
    its block; by run id, which starts with the start time). Rows of another library identity or an older
    code version get a cell hash of their own, so that no cell mixes identities. Idempotent."""
    if runs.empty or "older_code" in runs:
        return runs
    runs = runs.copy()
    identity = runs.apply(libraries, axis=1)
    runs["libraries"] = identity if identity.nunique() > 1 else ""
    code = runs["code_version"].fillna("unknown").map(canonical) if "code_version" in runs else "unknown"
    runs["code_version"] = code
    block = [key for key in ("dataset", "model", "train_size", "libraries", "strategy") if key in runs]
    ordered = runs.sort_values("run_id", kind="stable") if "run_id" in runs else runs
    newest = ordered.groupby(block, dropna=False)["code_version"].transform("last")
    runs["older_code"] = runs["code_version"] != newest.reindex(runs.index)
    of_libraries = runs["libraries"].map(lambda text: f"@{text}" if text else "")
    of_code = ("@" + runs["code_version"]).where(runs["older_code"], "")
    runs["cell_hash"] = runs["cell_hash"] + of_libraries + of_code
    return runs


# --- run: a cell answered by other code or libraries is stale --------------------------------------------


def stale_answers(answers: pd.DataFrame, cells: list) -> dict[str, str]:
    """config_hash -> why, for each of `cells` (RunConfigs) whose answers (`answers`: its ok and diverged
    rows) are all of another identity; a cell with one current answer is done."""
    stale = {}
    for cell in cells:
        rows = answers[answers["config_hash"] == cell.config_hash] if len(answers) else answers
        reasons = [why_stale(row, cell.strategy) for _, row in rows.iterrows()]
        if reasons and None not in reasons:
            stale[cell.config_hash] = reasons[-1]
    return stale


def refusal(stale: dict[str, str]) -> str:
    """The one line `run --stale refuse` answers with: how many cells, why, and the choices."""
    reasons = pd.Series(list(stale.values())).value_counts()
    why = "; ".join(f"{reason}: {count}" for reason, count in reasons.items())
    return (
        f"{len(stale)} cell(s) already have results from another code or library version ({why}); "
        "pass --stale rerun to train them again (the new rows supersede the old ones) or --stale keep to "
        "keep the old results as done"
    )
