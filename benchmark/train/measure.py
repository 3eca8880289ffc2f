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


# What `peak_memory_bytes` measured (the `memory_kind` column).
CUDA_ABOVE_START = "cuda_allocated_above_start"
CPU_RESIDENT = "cpu_process_resident_peak"
CPU_LIFETIME = "cpu_process_lifetime_peak"


class PeakMemory:
    """Peak memory of one run.

    GPU: the CUDA allocator's peak above what was allocated when `reset` was called, so tensors that an
    earlier cell of the process left allocated (data splits shared by a sweep, a cache) are not counted and
    the number does not depend on what ran before. CPU: the whole process's resident-set high-water mark
    (Linux VmHWM), reset to the current resident size at `reset` where Linux allows it; it still counts
    everything the process holds (the interpreter, libraries, earlier cells' leftovers), so it is a
    process-level number that depends on run order: reported, never compared."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.start_bytes = device, 0
        self.kind = CUDA_ABOVE_START if device.type == "cuda" else CPU_RESIDENT

    def reset(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self.start_bytes = int(torch.cuda.memory_allocated(self.device))
            return
        try:
            _CLEAR_REFS.write_text("5")  # "5" resets the peak resident set size to the current one
        except OSError:
            self.kind = CPU_LIFETIME  # cannot reset: the peak covers the whole process's life

    def peak_bytes(self) -> int:
        if self.device.type == "cuda":
            return int(torch.cuda.max_memory_allocated(self.device)) - self.start_bytes
        if _STATUS.exists():
            for line in _STATUS.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024  # reported in kB
        self.kind = CPU_LIFETIME  # getrusage's peak cannot be reset
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux
