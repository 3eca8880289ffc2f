"""Data-parallel runs under torchrun: process group, device per process, reductions across ranks."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import torch
import torch.distributed as torch_dist


@dataclasses.dataclass(frozen=True)
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def all_reduce_sum(self, tensors: list[torch.Tensor]) -> None:
        if self.enabled:
            for tensor in tensors:
                torch_dist.all_reduce(tensor)

    def barrier(self) -> None:
        if self.enabled:
            torch_dist.barrier()

    def broadcast(self, value: Any) -> Any:
        """Rank 0's `value` on every rank."""
        if not self.enabled:
            return value
        holder = [value]
        torch_dist.broadcast_object_list(holder, src=0)
        return holder[0]


def from_environment(device: torch.device) -> Dist:
    """Join the process group that torchrun describes in the environment; a single process otherwise."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Dist()
    if not torch_dist.is_initialized():
        torch_dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Dist(
        rank=torch_dist.get_rank(), world_size=world_size, local_rank=int(os.environ.get("LOCAL_RANK", 0))
    )


def resolve_device(requested: str) -> torch.device:
    """'auto' means the GPU if there is one; under torchrun each process takes the GPU of its local rank."""
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(requested)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


def shutdown() -> None:
    if torch_dist.is_initialized():
        torch_dist.destroy_process_group()
