"""Training defaults shared by the parameter-efficient strategies written on timm's modules."""

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
