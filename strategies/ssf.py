"""SSF (Lian et al. 2022): a learnable per-channel scale and shift after every Linear, LayerNorm and the
patch embedding of a ViT backbone, plus a new head."""

from __future__ import annotations

from typing import TYPE_CHECKING

from strategies import register
from strategies.base import Strategy, freeze
from strategies.recipes import PEFT_PROTOCOL, PEFT_PROTOCOL_SOURCE

if TYPE_CHECKING:
    from torch import nn


def _channels(module: nn.Module) -> tuple[int, int] | None:
    """(channels, channel dimension) of the output of a layer SSF follows, or None if it follows none."""
    from torch import nn

    if isinstance(module, nn.Linear):
        return module.out_features, -1
    if isinstance(module, nn.LayerNorm):  # timm's LayerNorm subclasses it
        return module.normalized_shape[-1], -1
    return None


@register
class SSF(Strategy):
    name = "ssf"
    family = "additive"
    description = (
        "SSF: per-channel scale and shift after every Linear, LayerNorm and the patch embedding; new head"
    )
    defaults = PEFT_PROTOCOL
    source = f"Lian et al. 2022 (SSF); {PEFT_PROTOCOL_SOURCE}"

    def prepare(self, model: nn.Module) -> nn.Module:
        from torch import nn

        from strategies._scale_shift import ScaleShift
        from strategies.vit import require_vit

        vit = require_vit(model, self.name)
        freeze(vit)
        like = next(vit.parameters())
        head = {id(module) for module in vit.get_classifier().modules()}
        targets = [
            (name, module, *found)
            for name, module in vit.named_modules()
            if id(module) not in head and (found := _channels(module))
        ]
        proj = getattr(vit.patch_embed, "proj", None)  # the patch embedding's convolution: (N, C, H, W) out
        if not isinstance(proj, nn.Conv2d):
            raise ValueError(
                f"strategy 'ssf' needs a ViT whose patch_embed.proj is a Conv2d; got {type(proj).__name__}"
            )
        targets.append(("patch_embed.proj", proj, proj.out_channels, 1))
        for name, module, channels, channel_dim in targets:
            parent, _, attribute = name.rpartition(".")
            setattr(vit.get_submodule(parent), attribute, ScaleShift(module, channels, channel_dim, like))
        return vit
