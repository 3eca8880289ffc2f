"""VPT-deep (Jia et al. 2022, Visual Prompt Tuning): new prompt tokens before every block, new head."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from strategies import register
from strategies._vpt import PromptOptions, PromptTuning


@dataclasses.dataclass(frozen=True)
class VptDeepOptions(PromptOptions):
    strategy: ClassVar[str] = "vpt_deep"


@register
class VptDeep(PromptTuning):
    name = "vpt_deep"
    description = (
        "learnable prompt tokens before every block, replacing the previous block's prompt outputs; "
        "frozen backbone, new head trainable"
    )
    Options = VptDeepOptions
    deep = True
