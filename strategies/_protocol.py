"""Training defaults shared by the parameter-efficient strategies written on timm's modules."""

from __future__ import annotations

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
