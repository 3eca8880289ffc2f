"""Older code versions that train the same numbers as the current ones, so that results written before a
change that moved code without changing what it computes stay current (`identity.canonical`).

`code_version` hashes module names and syntax trees: moving `benchmark/runner.py` to
`benchmark/train/runner.py`, or renaming an imported module, changes every hash while every trained number
stays the same. An entry here says so, for one current version: `{current: (older, ...)}`. Entries are added
only with evidence that the numbers are equal: the same cells run at both commits on one machine give
bit-identical rows (the evidence for each entry is named above it). An entry whose current version is no
longer current does nothing; it can be removed.
"""

EQUIVALENT: dict[str, tuple[str, ...]] = {}
