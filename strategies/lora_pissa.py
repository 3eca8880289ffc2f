"""LoRA with PiSSA's initialisation (Meng et al. 2024): A and B start at the base weight's principal
singular directions, via peft; new head trainable.

peft's `init_lora_weights="pissa"` takes the exact SVD W = U S V^T of each adapted weight, sets
B = U_r S_r^(1/2) and A = S_r^(1/2) V_r^T (divided by the scaling alpha / r) and replaces the frozen base weight
by the residual W - (alpha / r) B A, so the model still computes the backbone's function (up to float32
rounding) while the adapter trains the r most important directions. Everything else is `lora`'s: the same
options, targets (qkv) and training defaults; r=8, alpha=16 are lora's, for a like-for-like rank.
"""

from __future__ import annotations

from strategies import register
from strategies.lora import Lora
from strategies.recipes import PEFT_PROTOCOL_SOURCE, adamw_grid_with


@register
class LoraPissa(Lora):
    name = "lora_pissa"
    description = "peft LoRA on qkv initialised from the weight's top-r singular directions (PiSSA), new head"
    source = (
        "r=8, alpha=16 as the lora strategy (Hu et al. 2021); exact-SVD PiSSA initialisation "
        f"(Meng et al. 2024; peft's init_lora_weights='pissa'); {PEFT_PROTOCOL_SOURCE}; lr grid + 2e-5: "
        "PiSSA's LLaMA-2-7B MetaMathQA setting (peft's examples/pissa_finetuning README; no image task)"
    )
    init_lora_weights = "pissa"

    @classmethod
    def search_space(cls) -> dict[str, tuple]:
        # PiSSA fine-tunes LLaMA-2-7B on MetaMathQA at AdamW lr 2e-5 (peft's examples/pissa_finetuning/README.md;
        # the paper reports no image classification): the default grid plus 2e-5.
        return {"lr": adamw_grid_with(2e-5)}
