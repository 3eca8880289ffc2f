"""Bad input to every subcommand: exit status 2, one line on stderr, no traceback, nothing written.

One table: a new flag or command joins it as one more case. Each case runs `cli.main` in this process,
in an empty folder (plus the files its setup writes), offline.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from benchmark import cli
from benchmark.cli import yaml_file as experiment_yaml
from benchmark.cli.parser import build_parser
from tests.helpers import TINY_ARGS

RUN = ["run", "--dataset", "synthetic", *TINY_ARGS, "--strategies", "linear", "--no-pretrained"]
RUN += ["--epochs", "1", "--device", "cpu", "--results-dir", "results"]
SPEED = ["speed", "--strategies", "linear", *TINY_ARGS, "--device", "cpu", "--steps", "1"]
INSPECT = ["inspect", "--model", "vit_tiny_patch16_224", "--weights", "none"]


def yaml_file(text: str | bytes) -> Callable[[Path], None]:
    def write(folder: Path) -> None:
        path = folder / "e.yaml"
        path.write_bytes(text if isinstance(text, bytes) else text.encode())

    return write


DEEP = "set: " + "[" * 100 + "]" * 100 + "\n"
ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nset: [*b, *b]\n"
CONFIG = [*RUN[:1], "--config", "e.yaml", "--strategies", "linear", "--dry-run"]

# name: (argv, text the line must contain, setup writing input files into the folder or None)
CASES: dict[str, tuple[list[str], str, Callable[[Path], None] | None]] = {
    "run --lr inf": ([*RUN, "--lr", "inf"], "lr must be a finite number", None),
    "run --lr nan": ([*RUN, "--lr", "nan"], "lr must be positive", None),
    "run --lr 1e308": ([*RUN, "--lr", "1e308"], "lr must be a finite number", None),
    "run --weight-decay inf": ([*RUN, "--weight-decay", "inf"], "weight_decay must be a finite", None),
    "run --warmup-epochs inf": ([*RUN, "--warmup-epochs", "inf"], "warmup_epochs must be a finite", None),
    "run --clip-grad-norm nan": ([*RUN, "--clip-grad-norm", "nan"], "clip_grad_norm must be", None),
    "run --epochs 2^63": ([*RUN, "--epochs", str(2**63)], "epochs must be between", None),
    "run --seeds -1": ([*RUN, "--seeds", "-1"], "--seeds (each seed) must be between 0", None),
    "run --seeds 2^63": ([*RUN, "--seeds", f"0,{2**63}"], "--seeds (each seed) must be between 0", None),
    "run --val-fraction 0.999": ([*RUN, "--val-fraction", "0.999"], "leaving none to train on", None),
    "demo --workers 0": (["demo", "--workers", "0"], "--workers must be between 1 and 64", None),
    "demo --seeds -1": (
        ["demo", "--seeds", "-1", "--workers", "1"],
        "--seeds (each seed) must be between 0",
        None,
    ),
    "run --val-fraction nan": ([*RUN, "--val-fraction", "nan"], "--val-fraction must be between", None),
    "run --img-size below patch": ([*RUN, "--img-size", "3"], "smaller than model", None),
    "run --img-size 0": ([*RUN, "--img-size", "0"], "--img-size must be a number of pixels", None),
    "run num_heads=3": ([*RUN, "--model-arg", "num_heads=3"], "divisible by num_heads", None),
    "run embed_dim=-1": ([*RUN, "--model-arg", "embed_dim=-1"], "cannot be built", None),
    "run --device tpu": ([*RUN, "--device", "tpu"], "--device tpu is not usable here", None),
    "run --dry-run --lr inf": ([*RUN, "--dry-run", "--lr", "inf"], "lr must be a finite number", None),
    "file lr: .inf": (CONFIG, "lr must be a finite number", yaml_file("lr: .inf\n")),
    "file seeds: [-3]": (CONFIG, "must be between 0", yaml_file("seeds: [-3]\n")),
    "file num_heads: 5": (CONFIG, "divisible by num_heads", yaml_file("model_arg: {num_heads: 5}\n")),
    "file alias bomb": (CONFIG, "YAML aliases (*a) are not allowed", yaml_file(ALIAS_BOMB)),
    "file too deep": (CONFIG, f"nested deeper than {experiment_yaml.MAX_DEPTH} levels", yaml_file(DEEP)),
    "file duplicate key": (CONFIG, "duplicate key 'lr' at line 2", yaml_file("lr: 0.1\nlr: 0.2\n")),
    "file not UTF-8": (CONFIG, "not UTF-8 text", yaml_file(b"lr: \xff\xfe\n")),
    "file too large": (
        CONFIG,
        "larger than the limit",
        yaml_file("#" * (experiment_yaml.MAX_FILE_BYTES + 1)),
    ),
    "file /dev/zero": ([*CONFIG[:2], "/dev/zero", *CONFIG[3:]], "larger than the limit", None),
    "speed --device tpu": ([*SPEED, "--device", "tpu"], "--device tpu is not usable here", None),
    "speed --img-size 0": ([*SPEED, "--img-size", "0"], "--img-size must be a number of pixels", None),
    "speed num_heads=3": ([*SPEED, "--model-arg", "num_heads=3"], "divisible by num_heads", None),
    "speed --steps 0": ([*SPEED, "--steps", "0"], "--steps must be at least 1", None),
    "speed linear --batch-size 1": (
        [*SPEED, "--batch-size", "1"],
        "linear trains with batches of at least 2 images; got batch size 1",
        None,
    ),
    "eval --device tpu": (["eval", "some_run", "--device", "tpu"], "--device tpu is not usable here", None),
    "eval unknown run": (["eval", "some_run", "--device", "cpu"], "no run 'some_run'", None),
    "predict unknown run": (["predict", "some_run", "x.png"], "no run 'some_run'", None),
    "inspect --model nope_model": (["inspect", "--model", "nope_model"], "unknown model 'nope_model'", None),
    "inspect --img-size 0": ([*INSPECT, "--img-size", "0"], "--img-size must be a number of pixels", None),
    "inspect num_heads=5": ([*INSPECT, "--model-arg", "num_heads=5"], "divisible by num_heads", None),
    "inspect neither run nor model": (["inspect"], "inspect takes a run id, or --model", None),
    "inspect --out FILE": ([*INSPECT, "--out", "e.yaml"], "is a file", yaml_file("")),
    "report empty folder": (["report"], "no readable runs in results", None),
    "report --out FILE": (["report", "--out", "e.yaml"], "--out e.yaml is a file", yaml_file("")),
    "pretrain --steps 0": (["pretrain", "--steps", "0"], "--steps must be between 1", None),
    "pretrain --lr inf": (["pretrain", "--lr", "inf"], "--lr must be a finite number", None),
    "pretrain --warmup-steps": (
        ["pretrain", "--steps", "10", "--warmup-steps", "10"],
        "--warmup-steps must",
        None,
    ),
    "pretrain --seed -1": (["pretrain", "--seed", "-1"], "--seed must be between 0", None),
    "pretrain --out folder": (["pretrain", "--out", "."], "--out takes a .safetensors file", None),
    "list --bogus": (["list", "--bogus"], "unrecognized arguments", None),
    "no command": ([], "the following arguments are required: command", None),
}


def files_under(folder: Path) -> dict[str, bytes | None]:
    return {
        str(path.relative_to(folder)): (path.read_bytes() if path.is_file() else None)
        for path in sorted(folder.rglob("*"))
        if not path.is_symlink()
    }


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_exit_2_and_writes_nothing(case, tmp_path, capsys, monkeypatch):
    argv, expected, setup = CASES[case]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    if setup:
        setup(tmp_path)
    before = files_under(tmp_path)
    status = cli.main(argv)
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert status == 2, captured.err
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert expected in lines[0]
    assert "Traceback" not in captured.err + captured.out
    assert files_under(tmp_path) == before, "bad input wrote files"


def test_every_subcommand_has_a_case():
    commands = {argv[0] for argv, _, _ in CASES.values() if argv}
    parser_commands = set(build_parser().commands)
    assert parser_commands <= commands
