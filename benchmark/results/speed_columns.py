"""The columns of `speed`'s table (one row per strategy and baseline of one `python -m benchmark speed`)."""

from __future__ import annotations

from benchmark.results.column import PROVENANCE, _c

SPEED = [
    _c("speed_id", "str", "the invocation: UTC start time and a random suffix", required=True),
    _c("started_at", "str", "start time, ISO 8601 UTC"),
    _c(
        "kind",
        "str",
        "`strategy` (the runner's own training step), `bare_loop` (plain forward, loss, backward, SGD step on "
        "the whole model) or `forward_only` (no-grad forward)",
        required=True,
    ),
    _c("strategy", "str", "the strategy, or the baseline's name", required=True),
    _c("model", "str", "timm model name"),
    _c("model_args", "str", "extra `timm.create_model` arguments as JSON"),
    _c("img_size", "int", "input resolution", "px"),
    _c("batch_size", "int", "images per step", "images"),
    _c("optimizer", "str", "the optimiser of the step"),
    _c("precision", "str", "`fp32` or `bf16` autocast"),
    _c("device", "str", "torch device"),
    _c("device_name", "str", "GPU name, or CPU model and threads"),
    _c("threads", "int", "torch CPU threads"),
    _c("warmup_steps", "int", "steps run before timing"),
    _c("timed_steps", "int", "steps timed"),
    _c("compiled", "bool", "the trained module ran through `torch.compile`"),
    _c(
        "ms_per_step",
        "float",
        "wall-clock time per step, mean over the timed steps",
        "ms",
        "lower",
        required=True,
    ),
    _c("images_per_second", "float", "`batch_size / seconds per step`", "images/s", "higher", required=True),
    _c("step_gflops", "float", "floating-point operations of one step (`torch.utils.flop_counter`)", "GFLOP"),
    _c("achieved_tflops", "float", "`step_gflops / seconds per step`", "TFLOP/s", "higher"),
    _c(
        "peak_tflops",
        "float",
        "the device's peak dense bf16 throughput (known GPUs, or `--peak-tflops`)",
        "TFLOP/s",
    ),
    _c("mfu", "float", "model FLOPs utilisation: `achieved_tflops / peak_tflops`", "fraction", "higher"),
    _c("peak_memory_bytes", "int", "peak memory while timing, as in `runs/`", "bytes", "lower"),
    _c("memory_kind", "str", "as in `runs/`"),
    _c("trainable_params", "int", "as in `runs/` (0 for the forward-only row)"),
    _c("total_params", "int", "as in `runs/`"),
    _c(
        "inference_ms",
        "float",
        "a strategy row's no-grad forward of the trained model in eval mode, as the runner evaluates it, mean "
        "over the timed steps (empty for the baselines; the forward-only row is the backbone's)",
        "ms",
        "lower",
    ),
    _c(
        "merged",
        "bool",
        "the strategy merged its additions into plain weights (`Strategy.merged`: peft's merge, RepAdapter's "
        "reparameterisation) and the merged copy was timed too; false where it cannot, empty for the baselines",
    ),
    _c(
        "merged_inference_ms",
        "float",
        "as `inference_ms`, for the merged copy (empty unless merged)",
        "ms",
        "lower",
    ),
    _c(
        "merged_max_abs_diff",
        "float",
        "largest absolute difference between the merged and the unmerged model's logits on the timed batch",
    ),
    *PROVENANCE,
]
