"""SSF (Lian et al. 2022): a learnable per-channel scale and shift after every Linear, LayerNorm and the
patch embedding of a ViT backbone, plus a new head."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from strategies import register
from strategies._protocol import PEFT_PROTOCOL, PEFT_PROTOCOL_SOURCE
from strategies.base import Strategy, freeze, unfreeze
from strategies.vit import require_vit


class ScaleShift(nn.Module):
    """`layer(...) * ssf_scale + ssf_shift`, per channel: the last dimension of token features, dimension 1
    of a convolution's (N, C, H, W) output.

    Starts at scale 1 and shift 0, the identity. Departure from the paper: its official code draws
    them from N(1, 0.02) and N(0, 0.02); exact 1 and 0 make the model start at the backbone's function.
    """

    def __init__(self, layer: nn.Module, channels: int, channel_dim: int, like: torch.Tensor) -> None:
        super().__init__()
        self.layer, self.channel_dim = layer, channel_dim
        self.ssf_scale = nn.Parameter(torch.ones(channels, device=like.device, dtype=like.dtype))
        self.ssf_shift = nn.Parameter(torch.zeros(channels, device=like.device, dtype=like.dtype))

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        x = self.layer(*args, **kwargs)
        if self.channel_dim == -1:
            return x * self.ssf_scale + self.ssf_shift
        trailing = (1,) * (x.ndim - 2)  # spatial dimensions after the channel dimension
        return x * self.ssf_scale.view(-1, *trailing) + self.ssf_shift.view(-1, *trailing)


def _channels(module: nn.Module) -> tuple[int, int] | None:
    """(channels, channel dimension) of the output of a layer SSF follows, or None if it follows none."""
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
        unfreeze(vit.get_classifier())
        return vit
