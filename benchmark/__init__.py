"""A benchmark of fine-tuning strategies for pretrained timm Vision Transformers.

Layers, bottom up; a module imports only from its own layer or the ones below (tests/test_layout.py checks it):

- root: shared vocabulary: `errors`, `registry`, `limits`, `parsing` (text to typed values), `provenance`,
  `config` (one cell, resolved and validated)
- `data`, `weights`: images in; backbones and their pretrained weights
- `results`: columns, the results store, result identity, curves
- `train`: one cell trained and measured (also `pretrain`, `speed`)
- `kept`: a kept run's weights, and eval / predict / inspect on it
- `sweep`: many cells: planning, running, search, workers, launcher, progress
- `report`: tables and figures from a results folder
- `cli`: the command line
"""
