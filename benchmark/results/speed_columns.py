"""The columns of `speed`'s table (one row per strategy and baseline of one `python -m benchmark speed`)."""

from __future__ import annotations

from benchmark.results.column import PROVENANCE, Column

SPEED = [
    Column("speed_id", "str", "the invocation: UTC start time and a random suffix", required=True),
    Column("started_at", "str", "start time, ISO 8601 UTC"),
    Column(
        "kind",
        "str",
        "`strategy` (the runner's own training step), `bare_loop` (plain forward, loss, backward, SGD step on "
        "the whole model) or `forward_only` (no-grad forward)",
        required=True,
    ),
    Column("strategy", "str", "the strategy, or the baseline's name", required=True),
    Column("model", "str", "timm model name"),
    Column("model_args", "str", "extra `timm.create_model` arguments as JSON"),
    Column("img_size", "int", "input resolution", "px"),
    Column("batch_size", "int", "images per step", "images"),
    Column("optimizer", "str", "the optimiser of the step"),
    Column("precision", "str", "`fp32` or `bf16` autocast"),
    Column("device", "str", "torch device"),
    Column("device_name", "str", "GPU name, or CPU model and threads"),
    Column("threads", "int", "torch CPU threads"),
    Column("warmup_steps", "int", "steps run before timing"),
    Column("timed_steps", "int", "steps timed"),
    Column("compiled", "bool", "the trained module ran through `torch.compile`"),
    Column(
        "ms_per_step",
        "float",
        "wall-clock time per step, mean over the timed steps",
        "ms",
        "lower",
        required=True,
    ),
    Column(
        "images_per_second", "float", "`batch_size / seconds per step`", "images/s", "higher", required=True
    ),
    Column(
        "step_gflops", "float", "floating-point operations of one step (`torch.utils.flop_counter`)", "GFLOP"
    ),
    Column("achieved_tflops", "float", "`step_gflops / seconds per step`", "TFLOP/s", "higher"),
    Column(
        "peak_tflops",
        "float",
        "the device's peak dense bf16 throughput (known GPUs, or `--peak-tflops`)",
        "TFLOP/s",
    ),
    Column("mfu", "float", "model FLOPs utilisation: `achieved_tflops / peak_tflops`", "fraction", "higher"),
    Column("peak_memory_bytes", "int", "peak memory while timing, as in `runs/`", "bytes", "lower"),
    Column("memory_kind", "str", "as in `runs/`"),
    Column("trainable_params", "int", "as in `runs/` (0 for the forward-only row)"),
    Column("total_params", "int", "as in `runs/`"),
    Column(
        "inference_ms",
        "float",
        "a strategy row's no-grad forward of the trained model in eval mode, as the runner evaluates it, mean "
        "over the timed steps (empty for the baselines; the forward-only row is the backbone's)",
        "ms",
        "lower",
    ),
    Column(
        "merged",
        "bool",
        "the strategy merged its additions into plain weights (`Strategy.merged`: peft's merge, RepAdapter's "
        "reparameterisation) and the merged copy was timed too; false where it cannot, empty for the baselines",
    ),
    Column(
        "merged_inference_ms",
        "float",
        "as `inference_ms`, for the merged copy (empty unless merged)",
        "ms",
        "lower",
    ),
    Column(
        "merged_max_abs_diff",
        "float",
        "largest absolute difference between the merged and the unmerged model's logits on the timed batch",
    ),
    *PROVENANCE,
]
