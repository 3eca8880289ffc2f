"""The report: which cell of each strategy is compared (chosen on validation), statistics over seeds, tables
(terminal, markdown, LaTeX) and figures.

Imports root, `results` and `train` vocabulary; never `sweep` internals beyond the selection rule's users, never `cli`.
"""

import matplotlib

matplotlib.use("Agg")  # every figure of the report goes to a file: no display needed, none opened
