"""What became of a run: the `status` column's values, named once.

A `str` enum: a member equals, hashes and prints as its value, so rows on disk hold plain strings
("ok", ...), and a status read back from parquet compares equal to the member.
"""

from __future__ import annotations

import enum


class Status(str, enum.Enum):
    OK = "ok"  # trained and evaluated
    DIVERGED = "diverged"  # a non-finite training loss: an answer for this learning rate, not a gap
    FAILED = "failed"  # an error of this cell (recorded with the error; the sweep goes on)
    CANCELLED = "cancelled"  # Ctrl-C or SIGTERM; a rerun resumes the cell from its checkpoint
    SUPERSEDED = "superseded"  # replaced by a newer answer of the same cell (--force, --stale rerun)

    # The value, not "Status.OK", wherever a status is shown (Python 3.11+ changed the mixed-in default).
    __str__ = str.__str__
    __format__ = str.__format__


ANSWERS = (Status.OK, Status.DIVERGED)  # a cell with such a row is done
FAILURES = (Status.FAILED, Status.DIVERGED, Status.CANCELLED)  # counted apart in the report, never averaged
