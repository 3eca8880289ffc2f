"""Normalisation-layer tuning: the affine weight and bias of every normalisation layer train, plus a
new head (LayerNorm on a ViT: Qi et al. 2022, LN-tuning; BatchNorm on a ResNet: Frankle et al. 2021)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from strategies import register
from strategies._selective import train_selected
from strategies.base import Strategy
from strategies.recipes import PEFT_PROTOCOL, PEFT_PROTOCOL_SOURCE

if TYPE_CHECKING:
    from torch import nn


def norm_types() -> tuple[type[nn.Module], ...]:
    """torch's normalisation bases (BatchNorm*, SyncBatchNorm, InstanceNorm* derive from _NormBase) and
    timm's own norms that derive from none of them; timm's LayerNorm*, GroupNorm* and *NormAct layers
    subclass torch's and are covered by these."""
    from timm.layers import RmsNorm, RmsNorm2d, SimpleNorm, SimpleNorm2d
    from torch import nn

    return (
        nn.modules.batchnorm._NormBase,
        nn.LayerNorm,
        nn.GroupNorm,
        nn.RMSNorm,
        RmsNorm,
        RmsNorm2d,
        SimpleNorm,
        SimpleNorm2d,
    )


@register
class Norm(Strategy):
    name = "norm"
    family = "selective"
    description = (
        "the weight and bias of every normalisation layer (LayerNorm, BatchNorm, ...) and the new head train"
    )
    defaults = PEFT_PROTOCOL
    source = f"Qi et al. 2022 (LN-tuning), Frankle et al. 2021 (BatchNorm only); {PEFT_PROTOCOL_SOURCE}"

    def prepare(self, model: nn.Module) -> nn.Module:
        types = norm_types()
        return train_selected(
            model,
            lambda _name, module, _param: isinstance(module, types),
            self.name,
            "normalisation layers with affine parameters",
        )
