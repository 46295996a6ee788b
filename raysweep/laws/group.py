"""One law of a sweep as the fitter keeps it and every page reads it: which law it is (task, D_f,
metric), its points, its analysis, and the earlier fits its figure draws faintly."""

from __future__ import annotations

from dataclasses import dataclass, field

from raysweep.laws.analysis import Analysis


@dataclass
class LawGroup:
    task: str
    d_f: int
    metric: str
    points: dict[int, dict]
    """D_p -> {"y", "se", "seeds", "lr", "test_se"} (raysweep.laws.points.law_points); D_p = 0 is
    the no-pretraining baseline, measured, not fitted."""
    analysis: Analysis
    """The fit, its bootstrap, backtest and verdict (raysweep.laws.analysis.analyse)."""
    history: list = field(default_factory=list)
    """Earlier fits, (checkpoints fitted, band xs, band values), for the law's figure."""

    def summary(self) -> dict:
        """The law as laws.json holds it: the analysis, the points it was fitted on, the
        baseline."""
        law = self.analysis.to_dict()
        law["fitted_points"] = law.pop("points")  # with the errors they were judged with
        return {"task": self.task, "d_f": self.d_f, "metric": self.metric,
                "baseline": self.points.get(0),
                "points": {str(d_p): p for d_p, p in self.points.items()},  # D_p -> y, se
                **law}
