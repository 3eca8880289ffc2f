"""Linear probe (feature extraction): a new linear head on the frozen backbone's standardised features.

Follows MAE's linear probe (He et al. 2022, App. A.2): the head is `BatchNorm1d(affine=False,
eps=1e-6)` then `Linear`. The normalisation has no parameters, so the trainable count is the
Linear's alone; it standardises each feature with the training batches' statistics (running
averages at evaluation), as dinov2 and the VTAB linear evaluations standardise features, so that
no feature's scale slows the optimiser down (correlated features remain: see `source`).
Its running statistics are buffers of the trainable part (the runner keeps them with the weights).

Works on any timm classifier: the trunk is `forward_head(forward_features(x), pre_logits=True)`,
run once per image and cached when there is no augmentation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from strategies import register
from strategies.base import Split, Strategy, freeze
from strategies.recipes import LINEAR_PROBE, LINEAR_PROBE_SOURCE

if TYPE_CHECKING:
    from torch import nn


@register
class Linear(Strategy):
    name = "linear"
    family = "probe"
    description = "frozen backbone; a new head (non-affine BatchNorm + Linear) on the pooled features"
    defaults = LINEAR_PROBE
    source = LINEAR_PROBE_SOURCE
    min_batch_size = 2  # the head's BatchNorm normalises over the batch in training

    @classmethod
    def search_space(cls) -> dict[str, tuple]:
        # Muon's lr is not AdamW's: on the digits probe lr 0.05-0.2 all came within 2 points of
        # logistic regression, 0.3 fell 3 points short.
        return {"lr": (0.03, 0.1, 0.3)}

    def prepare(self, model: nn.Module) -> nn.Module:
        from torch import nn

        from strategies._trunk import ProbeHead, module_name, require_timm_classifier

        classifier = require_timm_classifier(model, self.name)
        freeze(model)
        if not isinstance(classifier, ProbeHead):
            if not isinstance(classifier, nn.Linear):
                raise ValueError(
                    f"strategy 'linear' needs a model whose classifier is one nn.Linear; "
                    f"got {type(classifier).__name__}"
                )
            model.set_submodule(module_name(model, classifier), ProbeHead(classifier))
        return model

    def split(self, model: nn.Module) -> Split:
        from strategies._trunk import split_at_classifier

        return split_at_classifier(model, self.name)
