"""Where a number came from: package versions, the code's git commit, the machine and device."""

from __future__ import annotations

import functools
import platform
import socket
import subprocess
from pathlib import Path

import torch

from benchmark.paths import PROJECT


def _git(*args: str) -> str:
    root = PROJECT
    try:
        return subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


@functools.cache
def provenance() -> dict[str, str]:
    import peft
    import timm

    commit = _git("rev-parse", "HEAD")
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "torch_version": torch.__version__,
        "timm_version": timm.__version__,
        "peft_version": peft.__version__,
        "python_version": platform.python_version(),
        "hostname": socket.gethostname(),
        "git_commit": (commit + ("+dirty" if dirty else "")) if commit else "unknown",
    }


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"CPU: {line.split(':', 1)[1].strip()} ({torch.get_num_threads()} threads)"
    except OSError:
        pass
    return f"CPU: {platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)"
