"""AdaLoRA (Zhang et al. 2023): LoRA in SVD form, P diag(E) Q, whose rank budget is cut during training
from `init_r` to `target_r` per module on average by pruning the least important singular values, via
peft; new head trainable.

The budget schedule needs the run's length and, after every optimiser step with the gradients still in
place, peft's `update_and_allocate`; both come from the runner's `on_step_end(model, step, total_steps)`
hook. The orthogonality regulariser on P and Q comes through `extra_loss`. peft's tuner (which holds the
rank allocator's importance scores) adapts the timm model in place and is kept by this strategy object;
its scores and the rank pattern go into each checkpoint through `extra_state`, so a resumed run is exact.
The singular values E start at zero, so the model starts at the backbone's function.

Stored and effective counts: the pruned ranks are masked, not removed, so the model stores rank `init_r`
throughout: (12 x 768 + 2,304 x 12 + 12) x 12 = 442,512 numbers on ViT-B/16's qkv layers, of which the
final budget (`target_r` 8 per module on average) keeps 8 x (768 + 2,304 + 1) x 12 = 295,008
(`effective_params`). The singular values, stored as (r, 1), are exempt from weight decay like every
vector (benchmark/train/optimizer_groups.py).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from strategies import register
from strategies._checks import check_at_least_one, check_dropout, check_positive, check_targets, option
from strategies.base import PeftStrategy
from strategies.recipes import PEFT_PROTOCOL, PEFT_PROTOCOL_SOURCE

ADAPTER_NAME = "default"  # peft's adapter name, as strategies._peft.ADAPTER (which imports peft)

if TYPE_CHECKING:
    import torch
    from peft import AdaLoraModel
    from torch import nn

# The rank allocator's per-matrix importance scores (peft's RankAllocator attributes), checkpointed.
ALLOCATOR_SCORES = ("ipt", "exp_avg_ipt", "exp_avg_unc")


@dataclasses.dataclass(frozen=True)
class AdaloraOptions:
    init_r: int = option(12, "rank of every module before pruning")
    target_r: int = option(8, "average rank per module at the end of the budget schedule")
    alpha: float = option(16.0, "the update is scaled by alpha / init_r, as the lora strategy's alpha / r")
    dropout: float = option(0.0, "dropout on the adapter's input")
    warmup_fraction: float = option(0.1, "share of the run's steps before pruning starts (peft's tinit)")
    final_fraction: float = option(
        0.2, "share of the run's steps trained at the final budget (peft's tfinal)"
    )
    interval: int = option(1, "steps between two budget re-allocations (peft's deltaT)")
    beta1: float = option(0.85, "smoothing of the sensitivity (importance) estimate")
    beta2: float = option(0.85, "smoothing of its uncertainty")
    orth_reg_weight: float = option(0.5, "weight of the orthogonality regulariser on P and Q")
    targets: tuple[str, ...] = option(("qkv",), "module names to adapt; timm fuses q, k and v into `qkv`")

    def __post_init__(self) -> None:
        check_at_least_one("target_r", self.target_r)
        if self.init_r < self.target_r:
            raise ValueError(f"init_r must be at least target_r {self.target_r}; got {self.init_r}")
        check_positive("alpha", self.alpha)
        check_dropout("dropout", self.dropout)
        for key, value in (
            ("warmup_fraction", self.warmup_fraction),
            ("final_fraction", self.final_fraction),
        ):
            if not 0 <= value < 1:
                raise ValueError(f"{key} must be in [0, 1); got {value}")
        if self.warmup_fraction + self.final_fraction >= 1:
            raise ValueError(
                "warmup_fraction + final_fraction must be below 1 to leave steps for "
                f"pruning; got {self.warmup_fraction} + {self.final_fraction}"
            )
        check_at_least_one("interval", self.interval)
        for key, value in (("beta1", self.beta1), ("beta2", self.beta2)):
            if not 0 < value < 1:
                raise ValueError(f"{key} must be in (0, 1); got {value}")
        if self.orth_reg_weight < 0:
            raise ValueError(f"orth_reg_weight must be at least 0; got {self.orth_reg_weight}")
        check_targets("targets", self.targets)


@register
class Adalora(PeftStrategy):
    name = "adalora"
    family = "reparameterised"
    description = "peft AdaLoRA on qkv: SVD-form LoRA pruned from rank 12 to 8 on average, new head trainable"
    Options = AdaloraOptions
    defaults = PEFT_PROTOCOL
    source = (
        "init_r 12, target_r 8, beta1 = beta2 = 0.85, orthogonality weight 0.5, re-allocation every step "
        "(peft's AdaLoraConfig defaults, after Zhang et al. 2023); warm-up 10% and final 20% of the steps "
        f"(the proportions of peft's AdaLoraConfig example); {PEFT_PROTOCOL_SOURCE}"
    )

    def __init__(self, options: AdaloraOptions | None = None) -> None:
        super().__init__(options)
        self._tuner: AdaLoraModel | None = None

    def prepare(self, model: nn.Module) -> nn.Module:
        from peft import AdaLoraConfig, AdaLoraModel

        from strategies._peft import ADAPTER, attach_tuner

        config = AdaLoraConfig(
            init_r=self.options.init_r,
            target_r=self.options.target_r,
            lora_alpha=self.options.alpha,
            lora_dropout=self.options.dropout,
            deltaT=self.options.interval,
            beta1=self.options.beta1,
            beta2=self.options.beta2,
            orth_reg_weight=self.options.orth_reg_weight,
            total_step=1,  # a placeholder: the run's length is set at the first `on_step_end`
            target_modules=list(self.options.targets),
        )
        self._tuner = attach_tuner(self.name, AdaLoraModel, config, model, self.options.targets)
        # ranknum (each module's initial rank, a constant) is a frozen parameter, but peft re-wraps it
        # as a new, trainable parameter when it moves the adapter to a base layer on another device
        # (the meta skeleton); freeze it again so every device counts the same.
        for name, param in model.named_parameters():
            if f".ranknum.{ADAPTER}" in name:
                param.requires_grad_(False)
        return model

    def _tuner_for(self, model: nn.Module) -> AdaLoraModel:
        model = getattr(model, "_orig_mod", model)  # torch.compile's wrapper
        model = getattr(model, "module", model)  # DistributedDataParallel's wrapper
        if self._tuner is None or self._tuner.model is not model:
            raise RuntimeError("adalora: the hooks need the model that this strategy object prepared")
        return self._tuner

    def on_step_end(self, model: nn.Module, step: int, total_steps: int) -> None:
        from strategies._peft import ADAPTER

        tuner = self._tuner_for(model)
        config = tuner.peft_config[ADAPTER]  # shared with peft's rank allocator
        if config.total_step != total_steps:
            config.total_step = total_steps
            config.tinit = int(self.options.warmup_fraction * total_steps)
            config.tfinal = int(self.options.final_fraction * total_steps)
        if total_steps - int(self.options.final_fraction * total_steps) < 2:
            # peft would fix the rank budget before it has measured any importance (a KeyError inside peft)
            raise ValueError(
                f"{self.name} needs at least 2 optimiser steps before its final "
                f"{self.options.final_fraction:.0%} (the rank budget is measured on them); this run has "
                f"{total_steps}: train longer (--epochs, --steps) or on more images"
            )
        tuner.update_and_allocate(step)

    def extra_state(self, model: nn.Module) -> dict[str, Any]:
        """What peft keeps outside the parameters: the rank allocator's importance scores (the last
        sensitivity `ipt` and its smoothed mean and uncertainty, one tensor per lora_A/B/E matrix, filled
        from the first step to the end of pruning, emptied when the budget is final) and the rank pattern
        (which singular values survive, per module; the last 20% of the steps re-apply it after every
        step). The budget schedule's length (total_step, tinit, tfinal) is set again by `on_step_end`."""
        from strategies._peft import ADAPTER

        tuner = self._tuner_for(model)
        allocator = tuner.rankallocator
        scores = {
            kind: {name: tensor.detach().cpu().clone() for name, tensor in getattr(allocator, kind).items()}
            for kind in ALLOCATOR_SCORES
        }
        pattern = tuner.peft_config[ADAPTER].rank_pattern
        rank_pattern = None if pattern is None else {name: list(kept) for name, kept in pattern.items()}
        return {"scores": scores, "rank_pattern": rank_pattern}

    def load_extra_state(self, model: nn.Module, state: dict[str, Any]) -> None:
        from strategies._peft import ADAPTER

        tuner = self._tuner_for(model)
        devices = {name: param.device for name, param in tuner.model.named_parameters()}
        for kind in ALLOCATOR_SCORES:
            tensors = state["scores"][kind]
            setattr(tuner.rankallocator, kind, {name: t.to(devices[name]) for name, t in tensors.items()})
        pattern = state["rank_pattern"]
        rank_pattern = None if pattern is None else {name: list(kept) for name, kept in pattern.items()}
        tuner.peft_config[ADAPTER].rank_pattern = rank_pattern

    def extra_loss(self, model: nn.Module) -> torch.Tensor | None:
        """The orthogonality regulariser of AdaLoRA (Zhang et al. 2023), as peft's
        `AdaLoraModel.forward` adds it: the weight times the mean over the P (lora_A) and Q (lora_B)
        matrices of the Frobenius norm of P P^T - I (Q^T Q - I)."""
        import torch

        from strategies._peft import ADAPTER

        if self.options.orth_reg_weight == 0:
            return None
        terms = []
        for name, param in self._tuner_for(model).model.named_parameters():
            if f"lora_A.{ADAPTER}" in name or f"lora_B.{ADAPTER}" in name:
                gram = param @ param.T if "lora_A" in name else param.T @ param
                identity = torch.eye(gram.shape[0], device=gram.device, dtype=gram.dtype)
                terms.append(torch.linalg.matrix_norm(gram - identity))
        return self.options.orth_reg_weight * torch.stack(terms).mean()

    def no_weight_decay(self, name: str, param: nn.Parameter) -> bool:
        return f".lora_E.{ADAPTER_NAME}" in name  # the singular values

    def effective_params(self, model: nn.Module) -> int:
        """The trainable count with every module's P, Q and E at `target_r` ranks instead of `init_r`: the
        numbers the final budget keeps. The budget is `target_r` x modules ranks in all, shared by
        importance; when the adapted modules differ in shape this counts it as spread evenly."""
        stored = sum(
            param.numel()
            for name, param in model.named_parameters()
            if any(f".{part}.{ADAPTER_NAME}" in name for part in ("lora_A", "lora_B", "lora_E"))
        )
        kept = stored * self.options.target_r // self.options.init_r  # each rank: a row of P and Q, one E
        return super().effective_params(model) - stored + kept
