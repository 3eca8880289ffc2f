"""Errors the command line reports in one line, without a traceback."""


class UsageError(Exception):
    """Bad input: what was wrong and what is valid. The CLI prints it and exits with status 2."""


class Diverged(Exception):
    """The training loss became non-finite."""


class DiskFull(Exception):
    """A write failed because the disk (or quota) is full. The CLI says so in one line and exits 1."""
