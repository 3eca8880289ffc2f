"""VPT-deep (Jia et al. 2022, Visual Prompt Tuning): new prompt tokens before every block, new head."""

from __future__ import annotations

from strategies import register
from strategies._vpt import PromptTuning


@register
class VptDeep(PromptTuning):
    name = "vpt_deep"
    description = (
        "learnable prompt tokens before every block, replacing the previous block's prompt outputs; "
        "frozen backbone, new head trainable"
    )
    deep = True
