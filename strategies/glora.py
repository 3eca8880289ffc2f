"""GLoRA (Chavan et al. 2023): a generalised update of weight and bias, W' = W + W * A + B and
b' = b + b * D + E + W C, via peft; new head trainable.

Departure: the paper searches each layer's form of A..E (low-rank, vector, scalar or none) with an
evolutionary search over a supernet; this module trains one fixed form, peft's GloraConfig default: A, B
low-rank (rank 8), C low-rank (rank 8, a vector of input width), D and E one scalar each. All start at
zero, so the model starts at the backbone's function. ViT-B/16 trains 2 x 8 x (2,304 + 768) + 8 x (768 + 1)
+ 2 = 55,306 numbers per qkv layer.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from strategies import register
from strategies._checks import check_at_least_one, check_targets, option
from strategies.base import PeftStrategy
from strategies.recipes import PEFT_PROTOCOL, PEFT_PROTOCOL_SOURCE

if TYPE_CHECKING:
    from torch import nn

FORMS_A_B = ("lora", "vector", "constant", "none")
FORMS_C = ("lora", "vector", "none")
FORMS_D_E = ("vector", "constant", "none")


@dataclasses.dataclass(frozen=True)
class GloraOptions:
    r: int = option(8, "rank of every low-rank part")
    form_a_b: str = option("lora", "form of A and B (the weight's multiplicative and additive updates)")
    form_c: str = option("lora", "form of C (the bias update W C)")
    form_d_e: str = option("constant", "form of D and E (the bias's multiplicative and additive updates)")
    targets: tuple[str, ...] = option(("qkv",), "module names to adapt; timm fuses q, k and v into `qkv`")

    def __post_init__(self) -> None:
        check_at_least_one("r", self.r)
        for key, value, valid in (
            ("form_a_b", self.form_a_b, FORMS_A_B),
            ("form_c", self.form_c, FORMS_C),
            ("form_d_e", self.form_d_e, FORMS_D_E),
        ):
            if value not in valid:
                raise ValueError(f"{key} must be one of {', '.join(valid)}; got {value!r}")
        check_targets("targets", self.targets)


@register
class Glora(PeftStrategy):
    name = "glora"
    family = "reparameterised"
    description = "peft GLoRA on qkv: low-rank A, B, C and scalar D, E updates of weight and bias, new head"
    Options = GloraOptions
    defaults = PEFT_PROTOCOL
    source = (
        "r=8, A/B/C low-rank, D/E scalars (peft's GloraConfig defaults; Chavan et al. 2023 search these "
        f"per layer); {PEFT_PROTOCOL_SOURCE}"
    )

    def prepare(self, model: nn.Module) -> nn.Module:
        from peft import GloraConfig

        from strategies._peft import inject

        config = GloraConfig(
            r=self.options.r,
            config_A_B=self.options.form_a_b,
            config_C=self.options.form_c,
            config_D_E=self.options.form_d_e,
            target_modules=list(self.options.targets),
        )
        return inject(self.name, config, model, self.options.targets)
