"""One law of a sweep as the fitter keeps it and every page reads it: which law it is (task, D_f,
metric, and in a study the candidate), its points, its analysis, and the earlier fits its figure
draws faintly."""

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
    candidate: str = ""
    """The study candidate whose checkpoints the points come from ("" in a plain sweep); its
    baseline (D_p = 0) is the study's, shared."""
    replicates: dict | None = field(default=None, repr=False)
    """D_p -> the point's paired bootstrap replicates (the mean over its seeds), where every
    trial logged them: what a study's comparison cancels the shared test-set noise with."""

    @property
    def key(self) -> tuple[str, str, int, str]:
        """(candidate, task, D_f, metric): which law it is."""
        return self.candidate, self.task, self.d_f, self.metric

    def summary(self) -> dict:
        """The law as laws.json holds it: the analysis, the points it was fitted on, the
        baseline."""
        law = self.analysis.to_dict()
        law["fitted_points"] = law.pop("points")  # with the errors they were judged with
        return {**({"candidate": self.candidate} if self.candidate else {}),
                "task": self.task, "d_f": self.d_f, "metric": self.metric,
                "baseline": self.points.get(0),
                "points": {str(d_p): p for d_p, p in self.points.items()},  # D_p -> y, se
                **law}
