"""The package's layout (benchmark/__init__.py lists the layers): imports only go down, no cycle, and modules and
functions small enough to read. Read from the source, nothing imported."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.helpers import ROOT

PACKAGE = ROOT / "benchmark"
# Layers bottom up; a module may import its own layer and the ones below. "" is the root's shared vocabulary.
LAYERS = [("",), ("data", "weights"), ("results",), ("train",), ("kept",), ("sweep",), ("report",), ("cli",)]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def _modules(*packages: Path) -> dict[str, Path]:
    """Dotted name -> file, for every module of the packages (default: benchmark) except the entry point."""
    found = {}
    for path in (path for package in packages or (PACKAGE,) for path in package.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] != "__main__":
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that `path` imports, anywhere in it (function-level imports too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name in modules}


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in RANK) else ""


def test_imports_only_go_down_the_layers():
    modules = _modules()
    upward = [
        f"{module} -> {imported}"
        for module, path in modules.items()
        for imported in _imports(path, modules)
        if RANK[_layer(imported)] > RANK[_layer(module)]
    ]
    assert not upward, upward


def test_every_subpackage_is_a_declared_layer_that_says_what_it_owns():
    for folder in PACKAGE.iterdir():
        if folder.is_dir() and folder.name != "__pycache__":
            assert folder.name in RANK, f"{folder.name}: not in LAYERS"
            assert ast.get_docstring(ast.parse((folder / "__init__.py").read_text(encoding="utf-8")))


def test_no_import_cycle():
    modules = _modules(PACKAGE, ROOT / "strategies")
    edges = {module: _imports(path, modules) - {module} for module, path in modules.items()}
    state: dict[str, str] = {}

    def visit(module: str, trail: list[str]) -> None:
        state[module] = "open"
        for imported in sorted(edges[module]):
            if imported.startswith(module + ".") or module.startswith(imported + "."):
                continue  # a package and its own modules (an __init__ re-export)
            assert state.get(imported) != "open", " -> ".join([*trail, module, imported])
            if imported not in state:
                visit(imported, [*trail, module])
        state[module] = "done"

    for module in sorted(edges):
        if module not in state:
            visit(module, [])


def test_modules_and_functions_fit_on_a_few_screens():
    long_modules, long_functions = [], []
    for module, path in _modules().items():
        source = path.read_text(encoding="utf-8")
        if len(source.splitlines()) > MAX_MODULE_LINES:
            long_modules.append(f"{module}: {len(source.splitlines())} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long_functions.append(f"{module}.{node.name}: {length} lines")
    assert not long_modules, long_modules
    assert not long_functions, long_functions


def test_every_test_file_is_in_the_index():
    """tests/README.md says where each behaviour is tested; a new test file goes there too."""
    listed = set(re.findall(r"`(test_\w+\.py)`", (ROOT / "tests" / "README.md").read_text(encoding="utf-8")))
    assert listed == {path.name for path in (ROOT / "tests").glob("test_*.py")}
