"""Every strategy's `--search default` grid is usable, and reaches the learning rate its paper (or its reference
code, or peft's documentation) trains at.

PAPER_LR holds, for each strategy added with the larger strategy set, the learning rate its source uses and
where that is written. Image classification (ViT, VTAB-1k) where the source reports it, else the source's main
setting, named. Each lr is the run's `lr` as this benchmark applies it (C3A's kernels train at
`kernel_lr_ratio` times it).
"""

from __future__ import annotations

import math

import pytest

import strategies
from strategies.c3a import C3aOptions

PAPER_LR: dict[str, tuple[float, str]] = {
    # peft wrappers
    "lora_pissa": (
        2e-5,
        "peft examples/pissa_finetuning/README.md: LLaMA-2-7B on MetaMathQA (PiSSA's setting)",
    ),
    "lora_olora": (3e-4, "peft examples/olora_finetuning/olora_finetuning.py default (LLM)"),
    "hra": (1e-3, "DaShenZi721/HRA nlu/experiments/glue/{qnli,rte,sst2}.sh: DeBERTaV3 on GLUE"),
    "road": (1e-3, "peft docs package_reference/road.md: 'around 1e-3'"),
    "miss": (2e-5, "peft examples/miss_finetuning/README.md: LLaMA-2-7B on MetaMathQA"),
    "shira": (
        3e-4,
        "peft examples/shira_finetuning default; peft method_comparison MetaMathQA shira lr 3e-4",
    ),
    "c3a": (
        1e-1 / C3aOptions().kernel_lr_ratio,
        "peft docs package_reference/c3a.md: kernels at lr 1e-1 (run lr x kernel_lr_ratio 100)",
    ),
    "waveft": (3e-4, "peft examples/waveft_finetuning default (LLM)"),
    "delora": (1e-2, "ExplainableML/DeLoRA scripts/glue_eval.sh: RoBERTa on CoLA, RTE, STS-B (1e-3 to 1e-2)"),
    "gralora": (1e-4, "peft examples/gralora_finetuning default (LLM)"),
    "glora": (1e-4, "Arnav0400/ViT-Slim GLoRA/README.md: VTAB-1k, 'LR=1e-4 works very well across datasets'"),
    "randlora": (
        1e-3,
        "PaulAlbert31/RandLoRA vision_language/src/args.py default: CLIP image classification",
    ),
    "vblora": (1e-3, "peft docs package_reference/vblora.md: vector bank 1e-3 (logits 1e-2)"),
    "ln_tuning": (1e-2, "OSU-MLB/PETL_Vision lr_wd_vtab_processed.yml: VTAB-1k AdamW lr {1e-3, 1e-2}"),
    # vision PETL
    "attn_only": (1e-2, "OSU-MLB/PETL_Vision lr_wd_vtab_processed.yml: VTAB-1k AdamW lr {1e-3, 1e-2}"),
    "mlp_only": (1e-2, "OSU-MLB/PETL_Vision lr_wd_vtab_processed.yml: VTAB-1k AdamW lr {1e-3, 1e-2}"),
    "difffit": (1e-2, "OSU-MLB/PETL_Vision lr_wd_vtab_processed.yml: VTAB-1k AdamW lr {1e-3, 1e-2}"),
    "convpass": (1e-3, "JieShibo/PETL-ViT convpass/vtab/train.py: VTAB-1k AdamW lr 1e-3"),
    "repadapter": (1e-3, "luogen1996/RepAdapter train.py: VTAB-1k AdamW lr 1e-3"),
    "fact_tt": (1e-3, "JieShibo/PETL-ViT FacT/fact_tt.py: VTAB-1k AdamW lr 1e-3"),
    "fact_tk": (1e-3, "JieShibo/PETL-ViT FacT/fact_tk.py: VTAB-1k AdamW lr 1e-3"),
    "vqt": (0.5, "VPT's recipe that vqt runs here: SGD base lr 1.0 x 128/256 (VQT's own runs: Adam)"),
    "pfeiffer_adapter": (1e-3, "ZhangYuanhan-AI/NOAH configs/Adapter/VTAB/slurm_train_adapter_vtab.sh"),
}


def test_paper_lr_names_registered_strategies():
    assert set(PAPER_LR) <= set(strategies.names())


@pytest.mark.parametrize("name", sorted(PAPER_LR))
def test_default_search_reaches_the_paper_lr(name):
    lr, source = PAPER_LR[name]
    grid = strategies.get(name).search_space()["lr"]
    assert any(math.isclose(lr, point, rel_tol=1e-9) for point in grid), (name, lr, source, grid)


@pytest.mark.parametrize("name", strategies.names())
def test_every_lr_grid_is_sorted_positive_and_without_repeats(name):
    grid = strategies.get(name).search_space()["lr"]
    assert len(grid) >= 1
    assert all(isinstance(lr, float) and math.isfinite(lr) and lr > 0 for lr in grid), grid
    assert list(grid) == sorted(set(grid)), grid
