"""Results on disk: every column declared once, the store that owns every path and write of a results folder,
the identity of a result (code and library versions), and training curves for TensorBoard, W&B or MLflow.

Imports the root modules and nothing above `results`.
"""
