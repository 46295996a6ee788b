"""Candidates from a table made elsewhere: one row per (candidate, checkpoint), as a researcher
copies them from papers or older studies (`raysweep compare --csv`). Each candidate's points are
analysed as `raysweep fit --csv` analyses one table (the law, its intervals and verdict; the noise
estimated from the points where no errors are given), then compared (raysweep.study.compare)."""

from __future__ import annotations

import numpy as np

from raysweep.laws.analysis import analyse
from raysweep.laws.forms import Law
from raysweep.study.compare import Candidate


def table_candidates(columns: dict[str, tuple[list, list, list | None]], law: Law,
                     huber_delta: float, *, increasing: bool | None, at: float | None = None,
                     baseline: float | None = None, baseline_se: float | None = None,
                     resamples: int = 1000, level: float = 0.9,
                     min_effect: float | None = None) -> list[Candidate]:
    """One Candidate per name of `columns` (name -> (D_p, values, standard errors or None)), in
    the order given, each with its analysis (a prediction at `at` where given) and its points
    with the error each was judged with (measured, or estimated from the points)."""
    candidates = []
    for name, (x, y, se) in columns.items():
        analysis = analyse(law, x, y, huber_delta, se=se, baseline=baseline,
                           baseline_se=baseline_se, increasing=increasing,
                           predict_at=[at] if at else (), resamples=resamples, level=level,
                           min_effect=min_effect)
        points = {float(p["x"]): {"y": float(p["y"]), "se": float(p["se"])}
                  for p in analysis.points if np.isfinite(p.get("se", np.nan))}
        if not points and se is not None:  # too few to analyse: the points as given
            points = {float(d): {"y": float(v), "se": float(s)} for d, v, s in zip(x, y, se)}
        if not points:
            raise ValueError(f"candidate {name!r}: {analysis.reason}; with no standard errors "
                             f"given, its noise cannot be estimated from its points")
        candidates.append(Candidate(name, points, analysis=analysis))
    return candidates
