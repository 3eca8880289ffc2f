"""The command line: `python -m benchmark {run,report,list,demo,speed,pretrain,eval,predict,inspect}`.

Parses flags and experiment files into typed settings, turns bad input into one-line errors (exit 2), and hands
the work to the layers below. The top layer: nothing imports it.
"""

from benchmark.cli.app import main

__all__ = ["main"]
