"""What the trainable part of a model eats, and evaluation over a split.

Images go through the pipeline and, for strategies with a frozen prefix, through that trunk without
autograd. When the pipeline is deterministic (no augmentation) and the trunk's outputs fit the memory
budget, the trunk runs once per image for the whole run and training uses the cached outputs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections import OrderedDict
from collections.abc import Callable

import torch
from torch import nn

from benchmark.data.batches import Pipeline
from benchmark.data.datasets import Splits
from benchmark.train.distributed import Dist
from benchmark.train.measure import Stopwatch
from benchmark.train.metrics import Tally
from benchmark.train.step import autocast

CACHE_FRACTION_OF_FREE_MEMORY = 0.5  # the trunk cache may use at most this share of free device memory
SPLITS = ("train", "val", "test")
SHARED_TRUNKS = 2  # distinct trunks whose outputs a sweep keeps at once (the most recently used)


@dataclasses.dataclass
class TrunkOutputs:
    """A frozen trunk's outputs for every image of each split, and what computing them cost: the wall-clock
    seconds of the pass per split, measured once when it ran and kept with the outputs, so that every cell
    that uses them is charged the same whether it computed them or reused them."""

    tensors: dict[str, torch.Tensor]
    seconds: dict[str, float]

    @property
    def nbytes(self) -> int:
        return sum(tensor.numel() * tensor.element_size() for tensor in self.tensors.values())

    def to(self, device: torch.device | str) -> TrunkOutputs:
        return TrunkOutputs({name: t.to(device) for name, t in self.tensors.items()}, dict(self.seconds))


class SharedTrunkOutputs:
    """Frozen trunks' outputs, kept for a whole sweep. They depend only on the trunk's weights, the
    preprocessing and the images, never on the learning rate or the seed of the trained part, so every
    search point and seed that shares a trunk computes its outputs once.

    They are kept on the host (CPU) between cells and copied to the device by the cell that uses them: a
    cell's device memory then holds only its own outputs, and its peak is the same whether it computed them
    or reused them. Outputs that do not fit the host's free memory are not kept."""

    def __init__(self) -> None:
        self._outputs: OrderedDict[str, TrunkOutputs] = OrderedDict()

    def get(self, key: str, device: torch.device) -> TrunkOutputs | None:
        if key not in self._outputs:
            return None
        self._outputs.move_to_end(key)
        return self._outputs[key].to(device)

    def put(self, key: str, outputs: TrunkOutputs) -> None:
        if outputs.nbytes > CACHE_FRACTION_OF_FREE_MEMORY * free_memory_bytes(torch.device("cpu")):
            return
        self._outputs[key] = outputs.to("cpu")  # on the CPU already: the same tensors, no copy
        while len(self._outputs) > SHARED_TRUNKS:
            self._outputs.popitem(last=False)


def _digest(tensor: torch.Tensor) -> bytes:
    return tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def free_memory_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def frozen_forward(trunk: nn.Module | None, batch: torch.Tensor, device: torch.device, precision: str):
    """The frozen trunk's output, without autograd (no activations kept for backward)."""
    if trunk is None:
        return batch
    with torch.no_grad(), autocast(device, precision):
        return trunk(batch)


class Inputs:
    def __init__(
        self,
        splits: Splits,
        pipeline: Pipeline,
        trunk: nn.Module | None,
        augment: bool,
        precision: str,
        eval_batch_size: int,
        device: torch.device,
    ) -> None:
        self.splits, self.pipeline, self.trunk = splits, pipeline, trunk
        self.augment, self.precision, self.device = augment, precision, device
        self.eval_batch_size = eval_batch_size
        self.features: TrunkOutputs | None = None  # the trunk's outputs, when cached
        if trunk is not None:
            trunk.eval()  # frozen: dropout off, statistics fixed, so its outputs are deterministic

    def _through_trunk(self, images: torch.Tensor, augment: bool, generator: torch.Generator | None):
        batch = self.pipeline(images, augment=augment, generator=generator)
        return frozen_forward(self.trunk, batch, self.device, self.precision)

    def can_cache(self) -> bool:
        if self.trunk is None or self.augment:
            return False
        sample = self._through_trunk(self.splits.train.images[:1], False, None)
        total = sum(len(getattr(self.splits, name)) for name in SPLITS)
        needed = sample.numel() * sample.element_size() * total
        return needed <= CACHE_FRACTION_OF_FREE_MEMORY * free_memory_bytes(self.device)

    def trunk_key(self) -> str:
        """What the trunk's outputs depend on: its tensors and structure, the preprocessing, the images."""
        digest = hashlib.sha256(repr(self.trunk).encode())
        for name, tensor in sorted(self.trunk.state_dict().items()):
            digest.update(name.encode() + _digest(tensor))
        settings = (
            self.pipeline.size,
            self.pipeline.mean.tolist(),
            self.pipeline.std.tolist(),
            self.precision,
        )
        digest.update(repr(settings).encode())
        for name in SPLITS:
            digest.update(_digest(getattr(self.splits, name).images))
        return digest.hexdigest()

    def cache_trunk_outputs(self, shared: SharedTrunkOutputs | None = None) -> str:
        """One pass of the trunk over every image, when possible, or its outputs from an earlier cell of
        the sweep. Returns "computed", "reused" or "" (not cached); `features` holds them and their cost."""
        if not self.can_cache():
            return ""
        key = self.trunk_key() if shared is not None else ""
        if shared is not None and (outputs := shared.get(key, self.device)) is not None:
            self.features = outputs
            return "reused"
        self.features = TrunkOutputs({}, {})
        for name in SPLITS:
            images = getattr(self.splits, name).images
            with Stopwatch(self.device) as watch:
                self.features.tensors[name] = torch.cat(
                    [
                        self._through_trunk(images[start : start + self.eval_batch_size], False, None)
                        for start in range(0, len(images), self.eval_batch_size)
                    ]
                )
            self.features.seconds[name] = watch.seconds
        if shared is not None:
            shared.put(key, self.features)
        return "computed"

    def batch(self, split_name: str, index: torch.Tensor, generator: torch.Generator | None = None):
        if self.features is not None:
            return self.features.tensors[split_name][index]
        augment = self.augment and split_name == "train"
        return self._through_trunk(getattr(self.splits, split_name).images[index], augment, generator)


def evaluate(forward: Callable, inputs: Inputs, split_name: str, num_classes: int, dist: Dist) -> Tally:
    """Every example of the split once; each process takes every world_size-th one, then sums."""
    labels = getattr(inputs.splits, split_name).labels
    tally = Tally.zeros(num_classes, inputs.device)
    mine = torch.arange(dist.rank, len(labels), dist.world_size, device=inputs.device)
    with torch.no_grad():
        for start in range(0, len(mine), inputs.eval_batch_size):
            index = mine[start : start + inputs.eval_batch_size]
            with autocast(inputs.device, inputs.precision):
                logits = forward(inputs.batch(split_name, index))
            tally.add(logits.float(), labels[index])
    dist.all_reduce_sum(tally.tensors())
    return tally
