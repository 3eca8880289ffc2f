"""`python -m benchmark COMMAND`: parse, dispatch to the command, and turn bad input into one line.

`--help`, `list` and usage errors answer without importing torch, timm, peft or pandas: the commands import
the modules that do the work when they run, and `run` checks the names it is given before that.
"""

from __future__ import annotations

import argparse
import sys

from benchmark.cli import commands, listing, run
from benchmark.cli.parser import Parser, build_parser
from benchmark.cli.terminal import console
from benchmark.errors import DiskFull, UsageError


def sweeps_of(parser: Parser, argv: list[str], args: argparse.Namespace) -> list:
    """The run's sweeps: the command line's, or one per (dataset, model, train size) of --config."""
    from benchmark.cli import experiment

    return experiment.sweeps(parser.commands["run"], argv[argv.index("run") + 1 :], args)


def main(argv: list[str] | None = None) -> int:
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.command == "run":
            args.sweeps = sweeps_of(parser, sys.argv[1:] if argv is None else argv, args)
        handler = {
            "run": lambda args: run.command_run(args, main),
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
