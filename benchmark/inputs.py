"""What the trainable part of a model eats, and evaluation over a split.

Images go through the pipeline and, for strategies with a frozen prefix, through that trunk without
autograd. When the pipeline is deterministic (no augmentation) and the trunk's outputs fit the memory
budget, the trunk runs once per image for the whole run and training uses the cached outputs.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from collections.abc import Callable

import torch
from torch import nn

from benchmark.data import Splits
from benchmark.distributed import Dist
from benchmark.evaluate import Tally
from benchmark.measure import Stopwatch
from benchmark.pipeline import Pipeline
from benchmark.training import autocast

CACHE_FRACTION_OF_FREE_MEMORY = 0.5  # the trunk cache may use at most this share of free device memory
SPLITS = ("train", "val", "test")
SHARED_TRUNKS = 2  # distinct trunks whose outputs a sweep keeps at once (the most recently used)


class SharedTrunkOutputs:
    """Frozen trunks' outputs, kept for a whole sweep. They depend only on the trunk's weights, the
    preprocessing and the images, never on the learning rate or the seed of the trained part, so every
    search point and seed that shares a trunk computes its outputs once."""

    def __init__(self) -> None:
        self._outputs: OrderedDict[str, dict[str, torch.Tensor]] = OrderedDict()

    def get(self, key: str) -> dict[str, torch.Tensor] | None:
        if key in self._outputs:
            self._outputs.move_to_end(key)
        return self._outputs.get(key)

    def put(self, key: str, outputs: dict[str, torch.Tensor]) -> None:
        self._outputs[key] = outputs
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
        self.cache: dict[str, torch.Tensor] = {}
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

    def cache_trunk_outputs(
        self,
        train_watch: Stopwatch,
        eval_watch: Stopwatch,
        cache_watch: Stopwatch,
        shared: SharedTrunkOutputs | None = None,
    ) -> str:
        """One pass of the trunk over every image, when possible, or its outputs from an earlier cell of
        the sweep. The pass counts as training for the training split and as evaluation for the others.
        Returns "computed", "reused" or "" (not cached)."""
        if not self.can_cache():
            return ""
        key = self.trunk_key() if shared is not None else ""
        if shared is not None and (outputs := shared.get(key)) is not None:
            self.cache = outputs
            return "reused"
        for name in SPLITS:
            with train_watch if name == "train" else eval_watch, cache_watch:
                images = getattr(self.splits, name).images
                self.cache[name] = torch.cat(
                    [
                        self._through_trunk(images[start : start + self.eval_batch_size], False, None)
                        for start in range(0, len(images), self.eval_batch_size)
                    ]
                )
        if shared is not None:
            shared.put(key, self.cache)
        return "computed"

    def batch(self, split_name: str, index: torch.Tensor, generator: torch.Generator | None = None):
        if split_name in self.cache:
            return self.cache[split_name][index]
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
