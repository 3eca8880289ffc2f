"""VB-LoRA (Li et al. 2024): LoRA whose factors are assembled from a vector bank shared by all adapted
layers, each sub-vector a top-k mixture of the bank's vectors chosen by trainable logits, via peft; new
head trainable.

A layer of widths (in, out) at rank r splits A and B into r x (in + out) / L sub-vectors of length L, each
with one logit per bank vector; ViT-B/16 (L = 256, 256 vectors, r = 4) trains a shared bank of
256 x 256 = 65,536 numbers and 4 x (3 + 9) x 256 = 12,288 logits per qkv layer. The bank is state of
peft's tuner, so the adapter is built through `VBLoRAModel`. Where L does not divide the adapted layers'
widths (the tests' 32 -> 96 qkv) the bank's vectors are as long as the largest common divisor of L and the
widths (32 there).

Not at the backbone at the start: as in the paper, the bank (uniform in +-0.02) and the logits (normal,
std 0.1) both start random, so B A is small but not zero.

Stored and effective counts: each sub-vector's mixture uses only its top-k (k = 2) logits, so the numbers
that reach the output are the bank and 2 logits per sub-vector: 65,536 + 2 x 4 x (3 + 9) x 12 = 66,688 on
ViT-B/16 (`effective_params`), where 212,992 are stored.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING

from strategies import register
from strategies._checks import check_at_least_one, check_dropout, check_positive, check_targets, option
from strategies.base import PeftStrategy
from strategies.recipes import PEFT_PROTOCOL, PEFT_PROTOCOL_SOURCE

if TYPE_CHECKING:
    from torch import nn

LOGITS = (".vblora_logits_A.", ".vblora_logits_B.")  # peft's names of the per-layer logits


@dataclasses.dataclass(frozen=True)
class VbloraOptions:
    r: int = option(4, "rank of each update")
    num_vectors: int = option(256, "vectors in the shared bank")
    vector_length: int = option(256, "length of each vector; should divide the adapted layers' widths")
    topk: int = option(2, "bank vectors mixed into each sub-vector")
    dropout: float = option(0.0, "dropout on the adapter's input")
    init_bank_bound: float = option(0.02, "the bank starts uniform in [-bound, bound]")
    init_logits_std: float = option(0.1, "the logits start normal with this standard deviation")
    targets: tuple[str, ...] = option(("qkv",), "module names to adapt; timm fuses q, k and v into `qkv`")

    def __post_init__(self) -> None:
        check_at_least_one("r", self.r)
        check_at_least_one("num_vectors", self.num_vectors)
        check_at_least_one("vector_length", self.vector_length)
        check_at_least_one("topk", self.topk)
        if self.topk > self.num_vectors:
            raise ValueError(f"topk must be at most num_vectors {self.num_vectors}; got {self.topk}")
        check_dropout("dropout", self.dropout)
        check_positive("init_bank_bound", self.init_bank_bound)
        check_positive("init_logits_std", self.init_logits_std)
        check_targets("targets", self.targets)


@register
class Vblora(PeftStrategy):
    name = "vblora"
    family = "reparameterised"
    description = "peft VB-LoRA on qkv: rank-4 factors mixed from a shared bank of 256 vectors, new head"
    Options = VbloraOptions
    defaults = PEFT_PROTOCOL
    source = (
        "r=4, 256 vectors of length 256, top-2 (peft's VBLoRAConfig defaults, after Li et al. 2024); "
        f"{PEFT_PROTOCOL_SOURCE}"
    )
    starts_at_backbone = False

    def prepare(self, model: nn.Module) -> nn.Module:
        from peft import VBLoRAConfig, VBLoRAModel

        from strategies._peft import attach_tuner, target_widths

        length = self.options.vector_length
        for m, n in target_widths(model, self.options.targets):
            length = math.gcd(length, m, n)  # see the module docstring
        config = VBLoRAConfig(
            r=self.options.r,
            num_vectors=self.options.num_vectors,
            vector_length=length,
            topk=self.options.topk,
            vblora_dropout=self.options.dropout,
            init_vector_bank_bound=self.options.init_bank_bound,
            init_logits_std=self.options.init_logits_std,
            target_modules=list(self.options.targets),
        )
        return attach_tuner(self.name, VBLoRAModel, config, model, self.options.targets).model

    def effective_params(self, model: nn.Module) -> int:
        """The trainable count less every logit outside its sub-vector's top k (see the module docstring)."""
        logits = [param for name, param in model.named_parameters() if any(part in name for part in LOGITS)]
        stored = sum(param.numel() for param in logits)
        kept = sum(param.numel() // param.shape[-1] * self.options.topk for param in logits)
        return super().effective_params(model) - stored + kept
