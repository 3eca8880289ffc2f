"""BitFit (Ben Zaken et al. 2022): only the bias terms of the backbone train, plus a new head."""

from __future__ import annotations

from typing import TYPE_CHECKING

from strategies import register
from strategies._selective import train_selected
from strategies.base import Strategy
from strategies.recipes import PEFT_PROTOCOL, PEFT_PROTOCOL_SOURCE

if TYPE_CHECKING:
    from torch import nn


def is_bias(name: str) -> bool:
    """A bias term: a parameter named `bias`, or `*_bias` as in timm's split q/v biases (BEiT, EVA).
    Attention position-bias tables (`relative_position_bias_table`) are not bias terms."""
    return name == "bias" or name.endswith("_bias")


@register
class BitFit(Strategy):
    name = "bitfit"
    family = "selective"
    description = "every bias of the backbone (any timm model) and the new head train; all weights frozen"
    defaults = PEFT_PROTOCOL
    # The paper tunes BERT with AdamW on GLUE (lr 1e-4 to 1e-3); on images we use the VTAB-1k protocol.
    source = f"Ben Zaken et al. 2022 (BitFit); {PEFT_PROTOCOL_SOURCE}"

    def prepare(self, model: nn.Module) -> nn.Module:
        return train_selected(
            model, lambda name, _module, _param: is_bias(name), self.name, "bias parameters"
        )
