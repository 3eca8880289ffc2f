"""RoAd (Liao et al. 2024): 2-D rotations of each adapted layer's output, pairs of outputs rotated by a
trainable angle and scaled by a trainable factor, via peft; new head trainable.

The default variant road_1 shares one angle and one scale per pair: out / 2 of each, so ViT-B/16 trains
2,304 numbers per qkv layer (1,152 angles, 1,152 scales), 27,648 besides the head. Angles start at zero and
scales at one, so the model starts at the backbone's function. Outputs are paired within groups of
`group_size` (64, peft's default); the grouping only orders the pairs (peft: no effect on the model's
quality) and is reduced to the largest even divisor it shares with the adapted layers' outputs where they
are not multiples of it (32 on the tests' 96-output qkv).
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING

from strategies import register
from strategies._checks import check_targets, option
from strategies.base import PeftStrategy
from strategies.recipes import PEFT_PROTOCOL, PEFT_PROTOCOL_SOURCE

if TYPE_CHECKING:
    from torch import nn

VARIANTS = ("road_1", "road_2", "road_4")  # out / 2, out and 2 x out angles (and as many scales)


@dataclasses.dataclass(frozen=True)
class RoadOptions:
    variant: str = option(
        "road_1", "one angle and scale per output pair (road_1), per output (road_2) or two (road_4)"
    )
    group_size: int = option(64, "outputs are paired within groups of this size (even)")
    targets: tuple[str, ...] = option(("qkv",), "module names to adapt; timm fuses q, k and v into `qkv`")

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {', '.join(VARIANTS)}; got {self.variant!r}")
        if self.group_size < 2 or self.group_size % 2:
            raise ValueError(f"group_size must be an even number of at least 2; got {self.group_size}")
        check_targets("targets", self.targets)


@register
class Road(PeftStrategy):
    name = "road"
    family = "reparameterised"
    description = "peft RoAd: a trainable 2-D rotation and scale per pair of qkv outputs, new head trainable"
    Options = RoadOptions
    defaults = PEFT_PROTOCOL
    source = (
        "variant road_1, group size 64 (peft's RoadConfig defaults, after Liao et al. 2024); "
        f"{PEFT_PROTOCOL_SOURCE}"
    )

    def prepare(self, model: nn.Module) -> nn.Module:
        from peft import RoadConfig

        from strategies._peft import inject, target_widths

        group_size = self.options.group_size
        for _, out in target_widths(model, self.options.targets):
            group_size = math.gcd(group_size, out)  # see the module docstring
        if group_size % 2:
            raise ValueError(f"road needs adapted layers with an even number of outputs; got {group_size}")
        config = RoadConfig(
            variant=self.options.variant, group_size=group_size, target_modules=list(self.options.targets)
        )
        return inject(self.name, config, model, self.options.targets)
