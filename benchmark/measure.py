"""Parameter counts, peak memory and timing that say exactly what they measure."""

from __future__ import annotations

import dataclasses
import resource
import time
from pathlib import Path

import torch
from torch import nn


@dataclasses.dataclass(frozen=True)
class ParamCounts:
    trainable: int  # parameters that receive gradients, the head included
    trainable_excluding_head: int
    head: int
    total: int  # every distinct parameter of the model being trained, adapters included

    @classmethod
    def of(cls, model: nn.Module) -> ParamCounts:
        head_ids = {id(param) for param in model.get_classifier().parameters()}
        params = list(model.parameters())  # nn.Module.parameters() yields each tensor once
        trainable = [param for param in params if param.requires_grad]
        trainable_head = sum(param.numel() for param in trainable if id(param) in head_ids)
        return cls(
            trainable=sum(param.numel() for param in trainable),
            trainable_excluding_head=sum(param.numel() for param in trainable) - trainable_head,
            head=sum(param.numel() for param in params if id(param) in head_ids),
            total=sum(param.numel() for param in params),
        )


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Stopwatch:
    """Accumulated wall-clock seconds; waits for queued GPU work before reading the clock."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.seconds, self._start = device, 0.0, None

    def __enter__(self) -> Stopwatch:
        synchronize(self.device)
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        synchronize(self.device)
        self.seconds += time.perf_counter() - self._start


_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


class PeakMemory:
    """Peak memory of one run: the CUDA allocator's peak on GPU; on CPU the process's resident peak
    (Linux VmHWM, reset at the start of the run so earlier runs in the same process do not count)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.kind = "cuda_allocated" if device.type == "cuda" else "cpu_resident"

    def reset(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            return
        try:
            _CLEAR_REFS.write_text("5")  # "5" resets the peak resident set size to the current one
        except OSError:
            self.kind = "cpu_resident_process_lifetime"  # cannot reset: the peak covers the whole process

    def peak_bytes(self) -> int:
        if self.device.type == "cuda":
            return int(torch.cuda.max_memory_allocated(self.device))
        if _STATUS.exists():
            for line in _STATUS.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024  # reported in kB
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux
