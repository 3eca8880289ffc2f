"""Where the project's own files are: the checkout that holds `benchmark/`, `strategies/`, `protocols/` and
`weights/` (an editable install runs from it)."""

from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
