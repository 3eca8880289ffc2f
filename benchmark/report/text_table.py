"""One table, two renderings: markdown for files and rich for the terminal, with the same bold cells."""

from __future__ import annotations

import dataclasses
import re

from rich.table import Table
from rich.text import Text


@dataclasses.dataclass
class TextTable:
    title: str
    headers: list[str]  # the first column is the row label
    rows: list[list[str]]
    bold: set[tuple[int, int]] = dataclasses.field(default_factory=set)  # (row, column) cells to emphasise
    caption: str = ""

    def _markdown_cell(self, row: int, column: int) -> str:
        text = self.rows[row][column]
        return f"**{text}**" if (row, column) in self.bold else text

    def markdown(self) -> str:
        lines = [
            "| " + " | ".join(self.headers) + " |",
            "|---|" + "---:|" * (len(self.headers) - 1),
        ]
        for row in range(len(self.rows)):
            cells = [self._markdown_cell(row, column) for column in range(len(self.headers))]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def rich(self) -> Table:
        table = Table(title=self.title, caption=self.caption or None)
        for index, header in enumerate(self.headers):
            table.add_column(header, justify="left" if index == 0 else "right")
        for row in range(len(self.rows)):
            table.add_row(
                *(
                    Text(self.rows[row][column], style="bold" if (row, column) in self.bold else "")
                    for column in range(len(self.headers))
                )
            )
        return table

    def latex(self) -> str:
        """A booktabs tabular (\\toprule, \\midrule, \\bottomrule) for a paper; bold cells in \\textbf{}."""
        lines = [
            "\\begin{tabular}{" + "".join(self._alignment()) + "}",
            "\\toprule",
            " & ".join(latex_escape(header) for header in self.headers) + " \\\\",
            "\\midrule",
        ]
        for row in range(len(self.rows)):
            cells = [latex_escape(text) for text in self.rows[row]]
            cells = [
                f"\\textbf{{{text}}}" if (row, column) in self.bold else text
                for column, text in enumerate(cells)
            ]
            lines.append(" & ".join(cells) + " \\\\")
        return "\n".join([*lines, "\\bottomrule", "\\end{tabular}"]) + "\n"

    def _alignment(self) -> list[str]:
        """The label column and text columns left, numbers (and "-" for none) right."""
        numeric = re.compile(r"^(-|[-+]?[\d.,]+.*)$")
        return ["l"] + [
            "r" if all(numeric.match(row[column]) for row in self.rows) else "l"
            for column in range(1, len(self.headers))
        ]


# LaTeX's special characters, and the few symbols the tables use, in text mode.
LATEX = {
    "\\": "\\textbackslash{}",
    "&": "\\&",
    "%": "\\%",
    "$": "\\$",
    "#": "\\#",
    "_": "\\_",
    "{": "\\{",
    "}": "\\}",
    "~": "\\textasciitilde{}",
    "^": "\\textasciicircum{}",
    "±": "$\\pm$",
    "↑": "$\\uparrow$",
    "↓": "$\\downarrow$",
    "·": "$\\cdot$",
}


def latex_escape(text: str) -> str:
    return "".join(LATEX.get(character, character) for character in text)
