"""LoRA (Hu et al. 2021): low-rank updates to the attention projections, via peft; new head trainable."""

from __future__ import annotations

import dataclasses
import re

from peft import LoraConfig, inject_adapter_in_model
from torch import nn

from strategies import register
from strategies._trunk import require_timm_classifier
from strategies.base import Strategy, freeze, unfreeze

# Every nn.Linear and ungrouped nn.Conv2d except the classifier: LoRA's dense layers generalised to
# models without attention. Grouped (depthwise) convolutions are left out: peft needs the rank to
# be divisible by their groups.
DENSE_LAYERS = "dense"


def dense_layer_names(model: nn.Module) -> list[str]:
    """Names of the model's nn.Linear and ungrouped nn.Conv2d layers, the classifier excepted."""
    classifier = require_timm_classifier(model, "lora")
    return [
        name
        for name, module in model.named_modules()
        if module is not classifier
        and (isinstance(module, nn.Linear) or (isinstance(module, nn.Conv2d) and module.groups == 1))
    ]


@dataclasses.dataclass(frozen=True)
class LoraOptions:
    r: int = 8  # rank of the update
    alpha: float = 16.0  # the update is scaled by alpha / r
    dropout: float = 0.0  # dropout on the adapter's input
    # Module names to adapt; timm's ViTs fuse q, k and v into `qkv`. On a model without a `qkv`
    # module (ResNet, ConvNeXt), the default adapts DENSE_LAYERS instead; pass it explicitly too.
    targets: tuple[str, ...] = ("qkv",)

    def __post_init__(self) -> None:
        if self.r < 1:
            raise ValueError(f"lora.r must be at least 1; got {self.r}")
        if self.alpha <= 0:
            raise ValueError(f"lora.alpha must be positive; got {self.alpha}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"lora.dropout must be in [0, 1); got {self.dropout}")
        if not self.targets:
            raise ValueError("lora.targets must name at least one module, e.g. qkv")


@register
class Lora(Strategy):
    name = "lora"
    family = "reparameterised"
    description = (
        "peft LoRA on the attention projections (fused qkv; without qkv, every dense layer), frozen "
        "backbone, new head trainable"
    )
    Options = LoraOptions
    defaults = {
        "optimizer": "adamw",
        "lr": 1e-3,
        "weight_decay": 1e-4,
        "epochs": 10,
        "batch_size": 128,
        "warmup_epochs": 1.0,
        "clip_grad_norm": 1.0,
        "augment": True,
    }
    source = (
        "r=8, alpha=16 as in Hu et al. 2021; AdamW lr 1e-3, weight decay 1e-4 as in the VTAB-1k "
        "PEFT protocol (Zhang et al. 2022, NOAH)"
    )

    def _targets(self, model: nn.Module) -> list[str] | str:
        targets = list(self.options.targets)
        default = targets == list(LoraOptions.targets) and not any(
            name.split(".")[-1] == "qkv" for name, _ in model.named_modules()
        )
        if targets == [DENSE_LAYERS] or default:
            # A full-match pattern: peft's list matching is by name suffix, which is not exact here.
            return "|".join(re.escape(name) for name in dense_layer_names(model)) or DENSE_LAYERS
        return targets

    def prepare(self, model: nn.Module) -> nn.Module:
        freeze(model)
        config = LoraConfig(
            r=self.options.r,
            lora_alpha=self.options.alpha,
            lora_dropout=self.options.dropout,
            target_modules=self._targets(model),
        )
        try:
            model = inject_adapter_in_model(config, model)
        except ValueError as error:  # peft: no module matched the targets
            raise ValueError(
                f"lora.targets {list(self.options.targets)} match no module of the model: {error}"
            ) from None
        # The head is trained in place rather than through peft's modules_to_save, which would keep a
        # second copy of it and count the head twice.
        unfreeze(model.get_classifier())
        return model
