"""What a results column is (name, type, unit, meaning, which way is better), and the provenance columns
that every table ends with. The tables themselves are in `columns` and `speed_columns`."""

from __future__ import annotations

import dataclasses
from typing import Literal

import pyarrow as pa

TYPES = {"str": pa.string(), "bool": pa.bool_(), "int": pa.int64(), "float": pa.float64()}


@dataclasses.dataclass(frozen=True)
class Column:
    name: str
    type: Literal["str", "bool", "int", "float"]
    meaning: str
    unit: str = ""  # "fraction", "s", "bytes", "images/s", ... ("" where none applies)
    better: Literal["higher", "lower"] | None = None  # the report marks the best cell by this
    required: bool = False  # a file without it is not a results file of this table


PROVENANCE = [
    Column("torch_version", "str", "PyTorch version"),
    Column("timm_version", "str", "timm version"),
    Column("peft_version", "str", "peft version"),
    Column("python_version", "str", "Python version"),
    Column("hostname", "str", "machine that ran it"),
    Column("git_commit", "str", "commit of the benchmark code, `+dirty` if it had uncommitted changes"),
]
