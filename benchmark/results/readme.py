"""The column tables of results/README.md, generated from `columns` (`python -m benchmark.results.readme`
rewrites them)."""

from __future__ import annotations

import re
import sys

from benchmark.paths import PROJECT
from benchmark.results.columns import TABLES


def markdown(table: str) -> str:
    """The table's columns as a markdown table, as results/README.md shows them."""
    lines = ["| column | type | unit | better | meaning |", "|---|---|---|---|---|"]
    for item in TABLES[table]:
        better = {"higher": "↑", "lower": "↓"}.get(item.better or "", "")
        lines.append(f"| `{item.name}` | {item.type} | {item.unit} | {better} | {item.meaning} |")
    return "\n".join(lines)


def render_readme(text: str) -> str:
    """`text` with each `<!-- columns:TABLE -->` ... `<!-- /columns -->` block regenerated."""

    def block(match: re.Match) -> str:
        return f"<!-- columns:{match[1]} -->\n{markdown(match[1])}\n<!-- /columns -->"

    return re.sub(r"<!-- columns:(\w+) -->.*?<!-- /columns -->", block, text, flags=re.DOTALL)


README = PROJECT / "results" / "README.md"

if __name__ == "__main__":  # python -m benchmark.results.readme: regenerate results/README.md's column tables
    README.write_text(render_readme(README.read_text()))
    sys.stdout.write(f"updated {README}\n")
