"""Where the command line writes what a user reads: standard error, so that standard output stays for data
(`--json`, `list --markdown`).
"""

from __future__ import annotations

from rich.console import Console

console = Console(stderr=True, highlight=False, soft_wrap=True)
