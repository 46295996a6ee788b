"""Studies: several candidate pretraining data compared on the same tasks.

- compare.py: the comparison of one (task, D_f, metric): ranking, P(best), pairwise differences
  and the decision (pure numpy/scipy).
- tables.py: candidates from a table made elsewhere (`raysweep compare --csv`).
"""
