"""Many cells: a sweep planned and run (resume, locks, stale rows), hyper-parameter search on validation, workers
that pull cells, the Slurm/local launcher, and the progress display.

Imports everything below it (root, `data`, `weights`, `results`, `train`, `kept`), nothing above.
"""
