"""Merged inference (`Strategy.merged`): a merged model computes what the trained model computes, with the
backbone's weights and no more, and `speed` times it and says so."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

import strategies
from benchmark.train.prepare import prepare_model
from tests.helpers import run_cli, tiny_speed, tiny_vit

# Methods whose published form merges into the weights (peft 0.21 merges them, RepAdapter reparameterises):
# each must merge. Other strategies may merge too, and are checked the same way when they do.
MUST_MERGE = {"lora", "dora", "loha", "lokr", "ia3", "oft", "boft", "vera", "fourierft", "hra", "repadapter"}
# Methods whose additions stay in the model at inference (a probe, prompts, bottleneck adapters).
NEVER_MERGE = {"linear", "vpt_shallow", "vpt_deep", "adapter", "adaptformer", "convpass"}


@pytest.mark.parametrize("name", strategies.names())
def test_a_merged_model_computes_what_the_trained_model_computes(name):
    torch.manual_seed(0)
    backbone = tiny_vit()
    original = {key: value.clone() for key, value in backbone.state_dict().items()}
    prepared = prepare_model(name, None, backbone)
    model = prepared.model
    with torch.no_grad():  # three random updates of every trainable parameter
        for _ in range(3):
            for param in model.parameters():
                if param.requires_grad:
                    param.add_(0.02 * torch.randn_like(param))
    model.eval()
    images = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        before = model(images)
        merged = prepared.strategy.merged(model)
        assert torch.equal(model(images), before), "merging must leave the trained model as it is"
    if merged is None:
        assert name not in MUST_MERGE, f"{name} should merge"
        return
    assert name not in NEVER_MERGE, f"{name} cannot merge"
    # Plain weights: the backbone's tensors, of the backbone's shapes, and nothing added.
    state = merged.state_dict()
    assert {key: value.shape for key, value in state.items()} == {
        key: value.shape for key, value in original.items()
    }
    # The updates reached weights outside the head (the head is the backbone's own module, updated in place).
    assert any(not torch.equal(state[key], original[key]) for key in original if not key.startswith("head."))
    with torch.no_grad():
        torch.testing.assert_close(merged.eval()(images), before, atol=1e-5, rtol=1e-5)


def test_speed_times_merged_inference_and_says_which_rows_merged(tmp_path):
    rows = tiny_speed(tmp_path, "lora,repadapter,linear")
    strategy_rows = rows[rows["kind"] == "strategy"]
    assert strategy_rows["merged"].to_dict() == {"lora": True, "repadapter": True, "linear": False}
    assert (strategy_rows["inference_ms"] > 0).all()
    merged = strategy_rows[strategy_rows["merged"].astype(bool)]
    assert (merged["merged_inference_ms"] > 0).all()
    assert (merged["merged_max_abs_diff"] < 1e-4).all(), "after the timed steps the merged model still agrees"
    assert pd.isna(strategy_rows.loc["linear", "merged_inference_ms"])
    assert rows.loc[rows["kind"] != "strategy", "merged"].isna().all(), (
        "the baselines have no strategy to merge"
    )
    report = run_cli("report", "--results-dir", "results", cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    lines = [line for line in (tmp_path / "results" / "report" / "summary.md").read_text().splitlines()]
    table = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines if line.startswith("| ")]
    column = table[0].index("merged")
    assert {row[0]: row[column] for row in table[1:]} == {
        "lora": "yes",
        "repadapter": "yes",
        "linear": "no",
        "bare loop (full model)": "-",
        "forward only (no grad)": "-",
    }
