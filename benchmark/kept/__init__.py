"""A run kept with --keep-weights: its trained parameters saved and loaded back, and what a user does with it
(evaluate again, classify image files, look inside).

Imports root, `data`, `weights`, `results` and `train`.
"""
