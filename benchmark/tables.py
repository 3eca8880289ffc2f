"""One table, two renderings: markdown for files and rich for the terminal, with the same bold cells."""

from __future__ import annotations

import dataclasses

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
