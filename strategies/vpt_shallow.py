"""VPT-shallow (Jia et al. 2022, Visual Prompt Tuning): prompt tokens before the first block, new head."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from strategies import register
from strategies._vpt import PromptOptions, PromptTuning


@dataclasses.dataclass(frozen=True)
class VptShallowOptions(PromptOptions):
    # Departure: the reference code's own example says "we don't use dropout for VPT-shallow"
    # (KMnP/vpt demo.ipynb); 0.1 is kept here so that shallow and deep differ only in depth.
    strategy: ClassVar[str] = "vpt_shallow"


@register
class VptShallow(PromptTuning):
    name = "vpt_shallow"
    description = (
        "learnable prompt tokens inserted after the class token before block 1; frozen backbone, "
        "new head trainable"
    )
    Options = VptShallowOptions
    deep = False
