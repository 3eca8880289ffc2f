"""LoRA (Hu et al. 2021): low-rank updates of existing weights, via peft; frozen backbone, new head trainable.

On a ViT the default adapts the attention projections: timm fuses q, k and v into one `qkv` layer, so that
layer is adapted whole. On a model without a `qkv` module (ResNet, ConvNeXt) the default adapts every
dense layer instead: each nn.Linear and ungrouped nn.Conv2d except the classifier (grouped, depthwise
convolutions are left out: peft needs the rank to divide their groups). `targets=dense` asks for that on
any model.
"""

from __future__ import annotations

import dataclasses
import re
from typing import TYPE_CHECKING, ClassVar

from strategies import register
from strategies._checks import check_at_least_one, check_dropout, check_positive, check_targets, option
from strategies.base import PeftStrategy
from strategies.recipes import PEFT_PROTOCOL, PEFT_PROTOCOL_SOURCE

if TYPE_CHECKING:
    from torch import nn

DENSE_LAYERS = "dense"


def dense_layer_names(model: nn.Module, strategy: str) -> list[str]:
    """Names of the model's nn.Linear and ungrouped nn.Conv2d layers, the classifier excepted."""
    from torch import nn

    from strategies._trunk import require_timm_classifier

    classifier = require_timm_classifier(model, strategy)
    return [
        name
        for name, module in model.named_modules()
        if module is not classifier
        and (isinstance(module, nn.Linear) or (isinstance(module, nn.Conv2d) and module.groups == 1))
    ]


@dataclasses.dataclass(frozen=True)
class LoraOptions:
    r: int = option(8, "rank of the update")
    alpha: float = option(16.0, "the update is scaled by alpha / r")
    dropout: float = option(0.0, "dropout on the adapter's input")
    targets: tuple[str, ...] = option(
        ("qkv",), "module names to adapt, or `dense` (see the module docstring)"
    )

    def __post_init__(self) -> None:
        check_at_least_one("r", self.r)
        check_positive("alpha", self.alpha)
        check_dropout("dropout", self.dropout)
        check_targets("targets", self.targets)


@register
class Lora(PeftStrategy):
    name = "lora"
    family = "reparameterised"
    description = (
        "peft LoRA on the attention projections (fused qkv; without qkv, every dense layer), frozen "
        "backbone, new head trainable"
    )
    Options = LoraOptions
    defaults = PEFT_PROTOCOL
    source = f"r=8, alpha=16 as in Hu et al. 2021; {PEFT_PROTOCOL_SOURCE}"
    use_dora: ClassVar[bool] = False
    # peft's `init_lora_weights`: True (A random, B zero) or a data-free init of A and B from the base weight
    # ("pissa", "olora"), which subtracts their product from the base weight so the model is unchanged.
    init_lora_weights: ClassVar[bool | str] = True

    def _targets(self, model: nn.Module) -> list[str]:
        targets = list(self.options.targets)
        has_qkv = any(name.split(".")[-1] == "qkv" for name, _ in model.named_modules())
        if targets == [DENSE_LAYERS] or (targets == list(LoraOptions.targets) and not has_qkv):
            return dense_layer_names(model, self.name)
        return targets

    def _init_lora_weights(self, model: nn.Module, targets: list[str]) -> bool | str:
        """The initialisation. peft's decomposing inits (PiSSA, OLoRA) read linear weights only, so a target
        of another kind (a ResNet's convolutions) is refused here, also at plan time; a meta-device skeleton
        (plan time) holds no numbers to decompose and gets peft's default, with the same counts."""
        from torch import nn

        from strategies._peft import _is_target

        if self.init_lora_weights is True:
            return True
        for name, module in model.named_modules():
            if _is_target(name, targets) and not isinstance(module, nn.Linear):
                raise ValueError(
                    f"strategy '{self.name}' initialises linear layers only; {name} is a "
                    f"{type(module).__name__} (on a ViT it adapts qkv)"
                )
        on_meta = any(param.is_meta for param in model.parameters())
        return True if on_meta else self.init_lora_weights

    def prepare(self, model: nn.Module) -> nn.Module:
        from peft import LoraConfig

        from strategies._peft import inject

        targets = self._targets(model)
        config = LoraConfig(
            r=self.options.r,
            lora_alpha=self.options.alpha,
            lora_dropout=self.options.dropout,
            # Dense layers by exact name: peft matches a list by name suffix, which is not exact here.
            target_modules=targets if targets == list(self.options.targets) else _full_match(targets),
            use_dora=self.use_dora,
            init_lora_weights=self._init_lora_weights(model, targets),
        )
        return inject(self.name, config, model, targets)


def _full_match(names: list[str]) -> str:
    return "|".join(re.escape(name) for name in names)
