"""VPT-shallow (Jia et al. 2022, Visual Prompt Tuning): prompt tokens before the first block, new head.

Departure: the reference code's own example says "we don't use dropout for VPT-shallow" (KMnP/vpt
demo.ipynb); dropout 0.1 is kept here so that shallow and deep differ only in depth.
"""

from __future__ import annotations

from strategies import register
from strategies._vpt import PromptTuning


@register
class VptShallow(PromptTuning):
    name = "vpt_shallow"
    description = (
        "learnable prompt tokens inserted after the class token before block 1; frozen backbone, "
        "new head trainable"
    )
    deep = False
