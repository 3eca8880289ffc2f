"""LoRA with OLoRA's initialisation (Büyükakyüz 2024): A and B start at the QR decomposition of the base
weight, via peft; new head trainable.

peft's `init_lora_weights="olora"` factors each adapted weight W = QR, sets B = Q_r (the first r orthonormal
columns) and A = R_r (the first r rows of R) and replaces the frozen base weight by W - (alpha / r) B A, so
the model still computes the backbone's function (up to float32 rounding) while the adapter starts
orthonormal. Everything else is `lora`'s: the same options, targets (qkv) and training defaults; r=8,
alpha=16 are lora's, for a like-for-like rank.
"""

from __future__ import annotations

from strategies import register
from strategies.lora import Lora
from strategies.recipes import PEFT_PROTOCOL_SOURCE


@register
class LoraOlora(Lora):
    name = "lora_olora"
    description = (
        "peft LoRA on qkv initialised from the weight's QR decomposition (OLoRA), new head trainable"
    )
    source = (
        "r=8, alpha=16 as the lora strategy (Hu et al. 2021); OLoRA initialisation (Büyükakyüz 2024; "
        f"peft's init_lora_weights='olora'); {PEFT_PROTOCOL_SOURCE}"
    )
    init_lora_weights = "olora"
