"""DoRA (Liu et al. 2024): weight-decomposed LoRA, via peft; new head trainable.

Each adapted weight is split into a magnitude (one trainable scalar per output row, initialised to the
pretrained row norms) and a direction updated by LoRA, so the model starts at the backbone's function.
Everything else is `lora`'s: the same options, targets and training defaults.
"""

from __future__ import annotations

from strategies import register
from strategies.lora import Lora
from strategies.recipes import PEFT_PROTOCOL_SOURCE


@register
class Dora(Lora):
    name = "dora"
    description = "peft DoRA (LoRA direction + trainable magnitude per output) on qkv, new head trainable"
    source = (
        "r=8, alpha=16 as the lora strategy (Hu et al. 2021), DoRA (Liu et al. 2024) adding only the "
        f"magnitude; {PEFT_PROTOCOL_SOURCE}"
    )
    use_dora = True
