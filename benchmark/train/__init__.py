"""One cell trained: a strategy applied to a backbone, the optimiser step, the training loop with
validation-based selection, metrics, costs, checkpoints to resume from; also `pretrain` and `speed`.

Imports root, `data`, `weights` and `results`.
"""
