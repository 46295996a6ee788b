"""Studies: several candidate pretraining data compared on the same tasks, in one job.

- source.py: the candidates' pretraining side by side, as one checkpoint source.
- compare.py: the comparison of one (task, D_f, metric): ranking, P(best), pairwise differences
  and the decision (pure numpy/scipy); study_comparisons over a study's laws.
- stopping.py: which candidates are beaten clearly enough to stop (the spec's `stop` policy).
- answer.py: the study's page and end-of-run table; figures.py: the candidates' laws overlaid.
- tables.py: candidates from a table made elsewhere (`raysweep compare --csv`).
"""
