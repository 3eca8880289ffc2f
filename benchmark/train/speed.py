"""`python -m benchmark speed`: the cost of one training step per strategy, on synthetic input.

Each strategy's step is the runner's own (`Stepper`, with the frozen trunk run without autograd).
Two baselines use the same model and batch: a bare `forward / backward / step` loop on the whole model,
and a no-grad forward pass. FLOPs are counted by torch's FlopCounterMode over one step (matrix
multiplications and convolutions, forward and backward); MFU divides the achieved FLOP/s by the
device's peak dense bf16 throughput.

Each strategy's row also times inference, a no-grad forward of the trained model in eval mode, as the runner
evaluates it; where the strategy can merge its additions into plain weights (`Strategy.merged`), the merged
copy's forward is timed too, and the row says so.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from benchmark.config import TrainParams, make_train_params
from benchmark.provenance import device_name, provenance
from benchmark.results import store
from benchmark.train.inputs import frozen_forward
from benchmark.train.measure import ParamCounts, PeakMemory, synchronize
from benchmark.train.prepare import prepare_model
from benchmark.train.step import Stepper, autocast, make_optimizer, make_scheduler, seed_everything
from benchmark.weights import backbone as backbones
from strategies import Strategy

# Peak dense bf16 tensor throughput, TFLOP/s, from the vendors' data sheets (without sparsity).
PEAK_BF16_TFLOPS = {
    "H200": 989.0,
    "H100 PCIe": 756.0,
    "H100": 989.0,
    "A100": 312.0,
    "L40S": 362.0,
    "L4": 121.0,
    "A10G": 70.0,
    "A10": 125.0,
    "RTX 4090": 165.2,
    "RTX 3090": 71.0,
}


def peak_tflops(name: str) -> float | None:
    """The peak of a known GPU, matching the longest name first (H100 PCIe before H100)."""
    for key in sorted(PEAK_BF16_TFLOPS, key=len, reverse=True):
        if key in name:
            return PEAK_BF16_TFLOPS[key]
    return None


@dataclasses.dataclass
class SpeedSpec:
    strategies: list[str]
    model: str
    model_args: dict[str, Any]
    img_size: int | None
    num_classes: int
    batch_size: int
    warmup_steps: int
    steps: int
    precision: str
    compile_model: bool
    peak_tflops: float | None
    baselines: bool


def _time(step: Callable[[], Any], warmup: int, steps: int, device: torch.device) -> float:
    """Seconds per step, after warm-up; the clock waits for queued GPU work."""
    for _ in range(warmup):
        step()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    return (time.perf_counter() - start) / steps


def _flops(step: Callable[[], Any]) -> int:
    counter = FlopCounterMode(display=False)
    with counter:
        step()
    return counter.get_total_flops()


def _measure(
    kind: str,
    name: str,
    step: Callable[[], Any],
    model: nn.Module,
    spec: SpeedSpec,
    device: torch.device,
    memory: PeakMemory,
) -> dict[str, Any]:
    """`memory` was reset before the model was made: its peak counts the model, its state and the step."""
    flops = _flops(step)  # also the first warm-up step
    seconds = _time(step, spec.warmup_steps, spec.steps, device)
    counts = ParamCounts.of(model)
    achieved = flops / seconds / 1e12
    peak = spec.peak_tflops or (peak_tflops(device_name(device)) if device.type == "cuda" else None)
    return {
        "kind": kind,
        "strategy": name,
        "ms_per_step": 1000 * seconds,
        "images_per_second": spec.batch_size / seconds,
        "step_gflops": flops / 1e9,
        "achieved_tflops": achieved,
        "peak_tflops": peak,
        "mfu": achieved / peak if peak else None,
        "peak_memory_bytes": memory.peak_bytes(),
        "memory_kind": memory.kind,
        "trainable_params": counts.trainable if kind != "forward_only" else 0,
        "total_params": counts.total,
    }


def _setup(spec: SpeedSpec, device: torch.device):
    """The model (on the CPU), images and labels; `PeakMemory` is reset first (see `_measure`)."""
    seed_everything(0)
    created = backbones.create(spec.model, spec.num_classes, "none", spec.img_size, spec.model_args)
    size = created.img_size
    images = torch.randn(spec.batch_size, 3, size, size, device=device)
    labels = torch.randint(0, spec.num_classes, (spec.batch_size,), device=device)
    return created.model, images, labels


def _memory(device: torch.device) -> PeakMemory:
    memory = PeakMemory(device)
    memory.reset()
    return memory


def strategy_row(name: str, spec: SpeedSpec, train: TrainParams, device: torch.device) -> dict[str, Any]:
    memory = _memory(device)
    model, images, labels = _setup(spec, device)
    prepared = prepare_model(name, None, model)
    prepared.model.to(device).train()
    trunk = prepared.trunk.eval() if prepared.trunk is not None else None
    optimizer = make_optimizer(prepared.model, train, device, prepared.strategy)
    total_steps = 1 + spec.warmup_steps + spec.steps  # the FLOP count's step, warm-up, timed steps
    scheduler = make_scheduler(optimizer, 0, total_steps)
    module = torch.compile(prepared.trainable) if spec.compile_model else prepared.trainable
    stepper = Stepper(module, prepared, optimizer, scheduler, train, spec.precision, device, total_steps)
    row = _measure(
        "strategy",
        name,
        lambda: stepper(frozen_forward(trunk, images, device, spec.precision), labels),
        prepared.model,
        spec,
        device,
        memory,
    )
    inference = inference_columns(prepared.strategy, prepared.model, images, spec, device)
    return row | {"optimizer": train.optimizer} | inference


def _inference_ms(model: nn.Module, images: torch.Tensor, spec: SpeedSpec, device: torch.device) -> float:
    def step() -> None:
        with torch.no_grad(), autocast(device, spec.precision):
            model(images)

    return 1000 * _time(step, spec.warmup_steps, spec.steps, device)


def inference_columns(
    strategy: Strategy, model: nn.Module, images: torch.Tensor, spec: SpeedSpec, device: torch.device
) -> dict[str, Any]:
    """Milliseconds per no-grad forward of the trained `model` (eval mode) and, where `strategy` merges, of its
    merged copy, with the largest difference between the two models' logits on `images`."""
    model.eval()
    columns: dict[str, Any] = {"inference_ms": _inference_ms(model, images, spec, device)}
    merged = strategy.merged(model)
    if merged is None:
        return columns | {"merged": False, "merged_inference_ms": None, "merged_max_abs_diff": None}
    merged.eval()
    with torch.no_grad(), autocast(device, spec.precision):
        difference = (model(images).float() - merged(images).float()).abs().max().item()
    return columns | {
        "merged": True,
        "merged_inference_ms": _inference_ms(merged, images, spec, device),
        "merged_max_abs_diff": difference,
    }


def bare_loop_row(spec: SpeedSpec, device: torch.device) -> dict[str, Any]:
    """A plain loop on the whole model with plain SGD (momentum 0.9): the floor for a full step."""
    memory = _memory(device)
    model, images, labels = _setup(spec, device)
    model = model.to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    module = torch.compile(model) if spec.compile_model else model

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, spec.precision):
            loss = nn.functional.cross_entropy(module(images).float(), labels)
        loss.backward()
        optimizer.step()

    row = _measure("bare_loop", "bare loop (full model)", step, model, spec, device, memory)
    return row | {"optimizer": "sgd"}


def forward_row(spec: SpeedSpec, device: torch.device) -> dict[str, Any]:
    memory = _memory(device)
    model, images, _ = _setup(spec, device)
    model = model.to(device).eval()

    def step() -> None:
        with torch.no_grad(), autocast(device, spec.precision):
            model(images)

    row = _measure("forward_only", "forward only (no grad)", step, model, spec, device, memory)
    return row | {"optimizer": ""}


def run_speed(spec: SpeedSpec, device: torch.device, flags: dict[str, Any], log) -> pd.DataFrame:
    rows = []
    for name in spec.strategies:
        train = make_train_params(name, flags, {})
        log(f"timing {name}: {spec.warmup_steps} warm-up, {spec.steps} timed steps, batch {spec.batch_size}")
        rows.append(strategy_row(name, spec, train, device))
    if spec.baselines:
        log("timing the baselines: bare training loop and no-grad forward")
        rows += [bare_loop_row(spec, device), forward_row(spec, device)]
    started = datetime.datetime.now(datetime.timezone.utc)
    common = {
        "started_at": started.isoformat(timespec="seconds"),
        "model": spec.model,
        "model_args": json.dumps(spec.model_args, sort_keys=True),
        "img_size": _img_size(spec),
        "batch_size": spec.batch_size,
        "precision": spec.precision,
        "device": str(device),
        "device_name": device_name(device),
        "threads": torch.get_num_threads(),
        "warmup_steps": spec.warmup_steps,
        "timed_steps": spec.steps,
        "compiled": spec.compile_model,
        **provenance(),
    }
    speed_id = f"{started:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    return pd.DataFrame([common | row | {"speed_id": speed_id} for row in rows])


def _img_size(spec: SpeedSpec) -> int:
    if spec.img_size:
        return spec.img_size
    skeleton = backbones.create_skeleton(spec.model, spec.num_classes, None, spec.model_args)
    return int(skeleton.patch_embed.img_size[0])


def write(frame: pd.DataFrame, results_dir: Path) -> Path:
    """One file per `speed` invocation, in the same atomic way as runs."""
    path = store.speed_path(results_dir, frame["speed_id"].iloc[0])
    store.write_atomic(frame, path, "speed")
    return path
