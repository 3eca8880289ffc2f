"""The named training recipes: every strategy's training defaults come from one of these, each with its source,
so that the defaults can be compared at a glance. Command-line flags and `--set STRATEGY.KEY=VALUE` override
them. Values only: no torch here."""

from __future__ import annotations

from strategies.base import ADAMW_LR_GRID

# The VTAB-1k PEFT protocol (Zhang et al. 2022, NOAH; followed by SSF and AdaptFormer's VTAB
# experiments): AdamW, lr 1e-3, weight decay 1e-4, batch 128, augmentation on; gradient clipping
# at global norm 1 as in this benchmark's other protocols.
PEFT_PROTOCOL = {
    "optimizer": "adamw",
    "lr": 1e-3,
    "weight_decay": 1e-4,
    "epochs": 10,
    "batch_size": 128,
    "warmup_epochs": 1.0,
    "clip_grad_norm": 1.0,
    "augment": True,
}
PEFT_PROTOCOL_SOURCE = (
    "AdamW lr 1e-3, weight decay 1e-4, batch 128: the VTAB-1k PEFT protocol (Zhang et al. 2022, NOAH)"
)


def adamw_grid_with(*lrs: float) -> tuple[float, ...]:
    """The AdamW grid of `--search default` plus a paper's learning rates, sorted and without repeats: for a
    strategy whose paper trains at a learning rate the default grid does not reach."""
    return tuple(sorted(set(ADAMW_LR_GRID) | set(lrs)))


# The unifying VTAB-1k study of Mai et al. 2025 (CVPR; code OSU-MLB/PETL_Vision,
# experiment/config/lr_wd_vtab_processed.yml) searches AdamW lr in {1e-3, 1e-2} for every method, the
# selective baselines (attention, MLP, LayerNorm, DiffFit) included; 1e-2 is above the default grid.
PETL_STUDY_LR = 1e-2
PETL_STUDY_LR_SOURCE = (
    "lr grid + 1e-2: Mai et al. 2025 search AdamW lr {1e-3, 1e-2} on VTAB-1k "
    "(OSU-MLB/PETL_Vision lr_wd_vtab_processed.yml)"
)


# The ViT paper's fine-tuning protocol (Dosovitskiy et al. 2021, App. B.1.1): SGD, momentum 0.9,
# no weight decay, gradient clipping at global norm 1, cosine decay, lr from {0.001, 0.003, 0.01, 0.03}.
# Batch 128 instead of the paper's 512 so that ViT-B/16 at 224 px fits common GPUs.
PAPER_FINETUNE = {
    "optimizer": "momentum",
    "lr": 0.003,
    "weight_decay": 0.0,
    "epochs": 10,
    "batch_size": 128,
    "warmup_epochs": 1.0,
    "clip_grad_norm": 1.0,
    "augment": True,
}
PAPER_SOURCE = "ViT paper fine-tuning protocol (Dosovitskiy et al. 2021, App. B.1.1)"


# The VPT code's prompt recipe (KMnP/vpt configs/base-prompt.yaml and
# tune_vtab.py; the paper's implementation-details appendix): SGD momentum 0.9, cosine schedule
# with linear warm-up, weight decay 1e-4, no gradient clipping, learning rate = base_lr * batch / 256,
# base_lr searched in
# {0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50}. We take base_lr 1.0 (the value of the reference
# code's own VTAB example runs for dmlab and eurosat, demo.ipynb) at batch 128, i.e. lr 0.5.
# Departures: 10 epochs with 1 warm-up epoch instead of 100 with 10 (the same 10% warm-up share;
# CIFAR has 50x the images of a VTAB-1k task, and every strategy here gets the same epoch budget);
# crop + flip augmentation as for `full` and `lora` here (VPT's VTAB pipeline only resizes,
# src/data/datasets/tf_dataset.py).
VPT_BASE_LR_BATCH = 256  # VPT scales its base learning rate by batch / 256
VPT_DEFAULTS = {
    "optimizer": "momentum",
    "lr": 1.0 * 128 / VPT_BASE_LR_BATCH,
    "weight_decay": 1e-4,
    "epochs": 10,
    "batch_size": 128,
    "warmup_epochs": 1.0,
    "clip_grad_norm": 0.0,
    "augment": True,
}
# `--search default`: four points of VPT's base-lr grid {0.25, 1, 5, 25}, scaled to batch 128.
# SGD on prompts needs far larger rates than the ViT paper's fine-tuning grid (0.001 to 0.03).
VPT_LR_GRID = tuple(base * 128 / VPT_BASE_LR_BATCH for base in (0.25, 1.0, 5.0, 25.0))
VPT_SOURCE = (
    "VPT (Jia et al. 2022) prompt recipe from its code (KMnP/vpt base-prompt.yaml, tune_vtab.py): "
    "SGD momentum 0.9, cosine, weight decay 1e-4, no clipping, lr = base 1.0 x batch/256 "
    "(searched 0.05-50); 10 epochs, 1 warm-up, crop + flip as for the other strategies here"
)


# No augmentation, so the runner computes each image's features once and trains the head on them.
LINEAR_PROBE = {
    "optimizer": "muon",
    "lr": 0.1,
    "weight_decay": 0.0,
    "epochs": 90,
    "batch_size": 128,
    "warmup_epochs": 1.0,
    "clip_grad_norm": 0.0,
    "augment": False,
}
LINEAR_PROBE_SOURCE = (
    "MAE's linear probe (He et al. 2022, App. A.2, Table 9): non-affine BatchNorm before the head, "
    "no weight decay, 90 epochs, cosine decay, no clipping. Departs from it: timm's Muon (Jordan et "
    "al. 2024; AdamW for the bias) at lr 0.1 instead of LARS at base lr 0.1, because on "
    "ill-conditioned features (a random ViT's: effective rank ~19 of 192) SGD/LARS/AdamW at batch "
    "64 reached 82-87% in 240 steps where Muon reached 89-90% (logistic regression: 91.6%); batch "
    "128 not 16384; 1 warm-up epoch not 10 (runs of 12 epochs must not spend them warming up); "
    "BatchNorm statistics averaged over all batches (momentum None: the cached features are "
    "fixed, so this is the training set's exact mean and variance); no augmentation so that "
    "features are computed once"
)


# DeiT's optimiser settings (Touvron et al. 2021), the rest of its recipe left out (see strategies/scratch.py).
SCRATCH = {
    "optimizer": "adamw",
    "lr": 5e-4,
    "weight_decay": 0.05,
    "epochs": 50,
    "batch_size": 128,
    "warmup_epochs": 5.0,
    "clip_grad_norm": 1.0,
    "augment": True,
}
SCRATCH_SOURCE = (
    "AdamW, lr 5e-4, weight decay 0.05, 5 warm-up epochs from DeiT (Touvron et al. 2021, batch 512); "
    "DeiT's augmentation, regularisation, lr scaling and 300 epochs left out"
)
