"""`python -m benchmark COMMAND`: parse, dispatch to the command, and turn bad input into one line.

`--help`, `list` and usage errors answer without importing torch, timm, peft or pandas: the commands import
the modules that do the work when they run, and `run` checks the names it is given before that.
"""

from __future__ import annotations

import argparse
import sys

from benchmark.cli import commands, experiment_file, listing, run
from benchmark.cli.parser import build_parser
from benchmark.cli.terminal import console
from benchmark.errors import DiskFull, UsageError


def sweeps_of(argv: list[str], args: argparse.Namespace) -> list[experiment_file.Sweep]:
    """The run's sweeps: the command line's, or one per (dataset, model, train size) of --config. The
    namespace holds only the flags written (the run parser's defaults are argparse.SUPPRESS)."""
    given = {name: value for name, value in vars(args).items() if name != "command"}
    return experiment_file.sweeps(given, argv[argv.index("run") + 1 :])


def main(argv: list[str] | None = None) -> int:
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        handler = {
            "run": lambda args: run.command_run(
                sweeps_of(sys.argv[1:] if argv is None else argv, args), main
            ),
            "report": commands.command_report,
            "list": listing.command_list,
            "demo": lambda args: commands.command_demo(args, main),
            "speed": commands.command_speed,
            "eval": commands.command_eval,
            "predict": commands.command_predict,
            "inspect": commands.command_inspect,
            "pretrain": commands.command_pretrain,
        }
        handler = handler[args.command]
        return handler(args)
    except UsageError as error:
        print(f"error: {' '.join(str(error).split())}", file=sys.stderr)  # one line, never wrapped
        return 2
    except DiskFull as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        console.print("interrupted", markup=False)
        return 130


if __name__ == "__main__":
    sys.exit(main())
