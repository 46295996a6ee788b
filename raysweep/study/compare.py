"""Which candidate pretraining data serves a task best, and how sure that is.

    compare(candidates, increasing=True, at=None, confidence=0.95) -> Comparison

One comparison per (task, D_f, metric). Each candidate brings its law's points (the same points
and analysis the single-mixture verdicts use: raysweep.laws.points, raysweep.laws.analysis) and,
where the trials logged them, the paired bootstrap replicates of each point.

Where the candidates are compared (`Comparison.at`):
- at the target D_p (fit.target_tokens, `raysweep compare --at`) when it lies beyond what was
  measured and every candidate can be read there: a candidate whose law holds by its law's
  prediction and bootstrap interval; one whose data do not help (verdict misaligned or no
  effect) by its last measured value, as more of such data is not expected to give more (the
  paper's misaligned mixtures); one that measured the target (trained there, beside one stopped
  earlier) by that point; one whose data may still help but follow no law yet by its trend at
  best, a bound that can lose the comparison but never win it (TREND_AT_BEST). The values are
  compared as independent: the test-set noise the candidates share (one test set) would cancel
  in their differences, so these intervals are if anything too wide.
- otherwise at the largest D_p every candidate has measured (DataDecide's single-scale rule, but
  with its uncertainty): the points themselves. Every candidate is scored on the same test
  sentences with the same resamples, so the covariance of their replicates is the noise they
  share, and it cancels in a difference exactly as between checkpoints of one sweep. A target
  where some candidate cannot be read (fewer than three points, or no analysis) falls back
  here, and the comparison says so.

The decision: the probability that each candidate is best (draws from the joint normal of the
candidates' values), the leader named only when that probability reaches `confidence`; else
"no decision yet" with what would resolve it. Pure numpy/scipy: no Ray, no MLflow.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import stats

from raysweep.laws.evidence import MISALIGNED, NO_EFFECT
from raysweep.text import tokens

DRAWS = 20_000
"""Draws of the candidates' joint values for P(best): its Monte Carlo error is below 0.004."""
DEFAULT_CONFIDENCE = 0.95
"""P(best) needed to name a candidate best, where a study sets no stopping policy."""


@dataclass
class Candidate:
    """One candidate's law for one (task, D_f, metric)."""
    name: str
    points: dict[float, dict]
    """D_p -> {"y", "se"} and, where the error's parts are known, "test_se" (the test-set part;
    the rest, the finetune seeds', is the candidate's own). D_p 0 (no pretraining) is ignored:
    it is shared by every candidate."""
    replicates: dict[float, np.ndarray] | None = None
    """D_p -> the point's paired bootstrap replicates (the mean over its seeds), drawn on the
    same resamples as every other candidate's; None where a trial logged none."""
    analysis: object | None = None
    """The candidate's raysweep.laws.analysis.Analysis: its predictions, and whether its law
    holds. None for a comparison of measured points only."""


@dataclass
class Comparison:
    metric: str
    at: float
    """The D_p the candidates are compared at."""
    basis: str
    """"measured" (the points at `at`) or "predicted" (each law's prediction at `at`)."""
    increasing: bool
    level: float
    confidence: float
    ranking: list[dict] = field(default_factory=list)
    """Best first: {"name", "value", "se", "low", "high", "p_best", "read", "law_checked"}; read:
    how the value was had ("measured", "its law", or a misaligned candidate's last value);
    law_checked: the candidate's law held its backtest (predicted held-out checkpoints)."""
    pairs: list[dict] = field(default_factory=list)
    """{"better", "worse", "difference", "se", "low", "high", "p_better"}: each pair, named in
    the order of the ranking; difference = better - worse in the metric's units."""
    best: str | None = None
    """The candidate named best, or None: no decision yet."""
    decision: str = ""
    """The decision in a sentence: the best with its probability, or what would resolve it."""
    note: str = ""
    """Why the comparison is not at the requested target, where it is not."""

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def p_best(self) -> dict[str, float]:
        return {row["name"]: row["p_best"] for row in self.ranking}


def compare(candidates: list[Candidate], metric: str, *, increasing: bool,
            at: float | None = None, confidence: float = 0.95, level: float = 0.9,
            seed: int = 0) -> Comparison:
    """Rank the candidates at `at` (default: the largest D_p all have measured), with each one's
    probability of being best and every pair's difference. See the module docstring."""
    if len(candidates) < 2:
        raise ValueError(f"a comparison needs two candidates or more, got {len(candidates)}")
    common = _largest_common(candidates)
    where, basis, note = _where(candidates, at, common, increasing)
    own = [None] * len(candidates)
    if basis == "predicted":
        values, cov, read, own = _predicted(candidates, where, increasing)
    else:
        (values, cov), read = _measured(candidates, where), ["measured"] * len(candidates)
    sign = 1.0 if increasing else -1.0
    p_best = _p_best(sign * values, cov, seed)
    order = sorted(range(len(candidates)), key=lambda i: (-p_best[i], -sign * values[i]))
    z = stats.norm.ppf(0.5 + level / 2)
    ranking = []
    for i in order:
        se = math.sqrt(max(cov[i, i], 0.0))
        low, high = own[i] or (values[i] - z * se, values[i] + z * se)
        ranking.append({"name": candidates[i].name, "value": float(values[i]), "se": se,
                        "low": float(low), "high": float(high), "p_best": float(p_best[i]),
                        "read": read[i], "law_checked": _law_checked(candidates[i])})
    pairs = [_pair(candidates, values, cov, a, b, sign, z)
             for n, a in enumerate(order) for b in order[n + 1:]]
    result = Comparison(metric, float(where), basis, increasing, level, confidence, ranking,
                        pairs, note=note)
    result.best, result.decision = _decide(result)
    return result


def _largest_common(candidates: list[Candidate]) -> float | None:
    shared = set.intersection(*({float(d) for d, p in c.points.items()
                                 if d > 0 and _finite(p.get("y"))} for c in candidates))
    return max(shared) if shared else None


def _where(candidates, at, common, increasing: bool) -> tuple[float, str, str]:
    """(the D_p to compare at, "measured" or "predicted", why not at `at` where it is not)."""
    if common is None:
        raise ValueError("the candidates have no pretrained checkpoint (D_p) in common: "
                         "they cannot be compared at one size")
    if at is None or at == common:
        return common, "measured", ""
    if at < common:
        # Below the common range a law's interpolation is no better than the points beside it.
        return common, "measured", (f"compared at {tokens(common)} tokens, the largest size "
                                    f"every candidate measured, not at {tokens(at)}")
    unreadable = [c.name for c in candidates if not _readable_at(c, at, increasing)]
    if unreadable:
        why = ", ".join(unreadable)
        return common, "measured", (
            f"compared at {tokens(common)} tokens (measured), not at the target {tokens(at)}: "
            f"nothing to read there for {why} (no law that holds, and data that may still help)")
    return float(at), "predicted", ""


def _readable_at(candidate: Candidate, at: float, increasing: bool = True) -> bool:
    """Whether the candidate has a value at `at` (D_p) to compare: see _at_target."""
    return _at_target(candidate, at, increasing) is not None


def _at_target(candidate: Candidate, at: float, increasing: bool
               ) -> tuple[float, float, str, tuple] | None:
    """(value, standard error, how it was read, its interval or None) of a candidate at the
    target: its law's prediction (and bootstrap interval) where the law holds (it draws on every
    point, so it is surer than the one point measured there); its last point where its data do
    not help; its point at the target where it measured one (a candidate trained to the target,
    beside one stopped earlier); else, with three points or more, its trend at best
    (_trend_at_best: a bound, not an estimate); None where none of these."""
    a = candidate.analysis
    if a is None:
        return None
    if a.law_holds is not False:
        z = stats.norm.ppf(0.5 + a.level / 2)
        for p in a.predictions:
            if math.isclose(p["x"], at, rel_tol=1e-9) and all(
                    _finite(p.get(k)) for k in ("value", "low", "high")):
                return (p["value"], (p["high"] - p["low"]) / (2 * z), "its law",
                        (p["low"], p["high"]))
    if a.verdict in (MISALIGNED, NO_EFFECT):
        last = max(d for d, p in candidate.points.items() if d > 0 and _finite(p.get("y")))
        return (candidate.points[last]["y"], candidate.points[last]["se"],
                f"its value at {tokens(last)} ({a.verdict}: more gives nothing)", None)
    there = candidate.points.get(at, candidate.points.get(int(at)))
    if there is not None and _finite(there.get("y")):
        return there["y"], there["se"], "measured", None
    return _trend_at_best(candidate, at, increasing, a.level)


TREND_AT_BEST = "its trend at best (no law holds yet: a bound)"
"""How a candidate read by _trend_at_best is named: it can lose a comparison, never win one."""


def _trend_at_best(candidate: Candidate, at: float, increasing: bool, level: float):
    """A candidate whose data may still help but follow no law yet, read at `at` as the best it
    can plausibly reach: the straight line through its points in log D_p (weighted by their
    errors), with the slope at the optimistic end of its interval (never worse than flat),
    continued from the last point. Task metrics grow at most about linearly in log D_p (the
    log-law's aligned curves bend down), so this overstates a candidate rather than understates
    it: a leader that beats it beats the candidate. None below three points."""
    xs = sorted(d for d, p in candidate.points.items()
                if d > 0 and _finite(p.get("y")) and _finite(p.get("se")) and p["se"] > 0)
    if len(xs) < 3:
        return None
    u = np.log(np.array(xs, dtype=float))
    y = np.array([candidate.points[d]["y"] for d in xs], dtype=float)
    w = 1.0 / np.array([candidate.points[d]["se"] for d in xs], dtype=float) ** 2
    design = np.column_stack([np.ones_like(u), u - u[-1]])  # the intercept: the line at the last
    cov = np.linalg.inv(design.T @ (design * w[:, None]))
    coef = cov @ design.T @ (w * y)
    z = stats.norm.ppf(0.5 + level / 2)
    sign = 1.0 if increasing else -1.0
    slope = sign * max(sign * coef[1] + z * math.sqrt(cov[1, 1]), 0.0)
    value = coef[0] + slope * math.log(at / xs[-1])
    return float(value), math.sqrt(cov[0, 0]), TREND_AT_BEST, None


def _law_checked(candidate: Candidate) -> bool:
    a = candidate.analysis
    return bool(a is not None and a.backtest and a.law_holds)


def _predicted(candidates, at: float, increasing: bool
               ) -> tuple[np.ndarray, np.ndarray, list[str], list]:
    """Each candidate's value at `at` (_at_target), their covariance (independent), how each
    was read and its own interval where it has one (a law's bootstrap: often lopsided)."""
    rows = [_at_target(c, at, increasing) for c in candidates]
    return (np.array([r[0] for r in rows], dtype=float), np.diag([r[1] ** 2 for r in rows]),
            [r[2] for r in rows], [r[3] for r in rows])


def _measured(candidates, at: float) -> tuple[np.ndarray, np.ndarray]:
    """The candidates' points at `at` and their joint covariance: the test-set noise they share
    (the covariance of their paired replicates) plus each one's own seed noise; independent
    where any replicates are missing (conservative for a difference: shared noise cancels)."""
    points = [c.points.get(at, c.points.get(int(at))) for c in candidates]
    values = np.array([p["y"] for p in points], dtype=float)
    total = np.array([p["se"] ** 2 for p in points], dtype=float)
    vectors = [None if c.replicates is None else c.replicates.get(at, c.replicates.get(int(at)))
               for c in candidates]
    if any(v is None for v in vectors) or len({np.size(v) for v in vectors}) != 1:
        return values, np.diag(total)
    test = np.atleast_2d(np.cov(np.asarray(vectors, dtype=float), ddof=1))
    own = np.array([max(t - p.get("test_se", math.sqrt(t)) ** 2, 0.0)
                    for t, p in zip(total, points)])
    # The test-set part measured on the replicates (as raysweep.laws.points does for a point's
    # own error), the seeds' part as the point's error holds it.
    return values, test + np.diag(own)


def _p_best(scores: np.ndarray, cov: np.ndarray, seed: int) -> np.ndarray:
    """P(each candidate has the highest score) under the joint normal of the scores."""
    rng = np.random.default_rng(seed)
    # eigh, not cholesky: a covariance estimated from replicates can be singular (two identical
    # candidates) or, by rounding, very slightly indefinite.
    w, v = np.linalg.eigh((cov + cov.T) / 2)
    draws = scores + rng.standard_normal((DRAWS, scores.size)) * np.sqrt(np.clip(w, 0, None)) @ v.T
    # A tie (candidates measured alike with no noise: a metric at 0 for all) shares the draw:
    # argmax alone would hand every tied draw to the first candidate listed.
    top = draws >= draws.max(axis=1, keepdims=True) - 1e-12 * (1 + np.abs(draws))
    return (top / top.sum(axis=1, keepdims=True)).mean(axis=0)


def _pair(candidates, values, cov, a: int, b: int, sign: float, z: float) -> dict:
    difference = float(values[a] - values[b])
    se = math.sqrt(max(cov[a, a] + cov[b, b] - 2 * cov[a, b], 0.0))
    p_better = (float(stats.norm.cdf(sign * difference / se)) if se > 0
                else float(sign * difference > 0))
    return {"better": candidates[a].name, "worse": candidates[b].name, "difference": difference,
            "se": se, "low": difference - z * se, "high": difference + z * se,
            "p_better": p_better}


def _decide(c: Comparison) -> tuple[str | None, str]:
    leader, runner = c.ranking[0], c.ranking[1]
    where = f"at {tokens(c.at)} tokens ({c.basis})"
    if leader["read"] == TREND_AT_BEST:
        return None, (f"no decision yet {where}: {leader['name']} may lead, but it follows no "
                      f"law yet and is read at its best; its next checkpoints will tell")
    if leader["p_best"] >= c.confidence:
        return leader["name"], (f"best: {leader['name']}, P(best) {leader['p_best']:.2f} {where}")
    pair = next(p for p in c.pairs if {p["better"], p["worse"]}
                == {leader["name"], runner["name"]})
    z = stats.norm.ppf(c.confidence)
    gap = abs(pair["difference"])
    if gap > 0 and pair["se"] > 0:
        # The error the gap must stand against for the confidence asked, if the gap stays.
        factor = pair["se"] * z / gap
        resolve = (f"the difference's error must shrink {factor:.1f}x (more test sentences "
                   f"or seeds), or the gap grow with more data")
    else:
        resolve = "the two measure the same: nothing short of a real difference will separate them"
    return None, (f"no decision yet {where}: {leader['name']} leads {runner['name']} by "
                  f"{gap:.3g} +- {pair['se']:.2g} (P(best) {leader['p_best']:.2f}, "
                  f"{c.confidence:.2f} asked); {resolve}")


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def study_comparisons(spec, groups, at: float | None = None
                      ) -> list[tuple[str, int, Comparison]]:
    """(task, D_f, comparison) of each (task, D_f, metric) of a study (its spec and laws: the
    fitter's LawGroups) whose candidates have a checkpoint in common, in the spec's order, at
    `at` (default fit.target_tokens)."""
    confidence = spec.stop.confidence if spec.stop else DEFAULT_CONFIDENCE
    found = []
    for task in spec.tasks:
        for d_f in task.finetune_tokens:
            for metric in spec.fit.metrics:
                mine = [g for g in groups if g.candidate and (g.task, g.d_f, g.metric)
                        == (task.name, d_f, metric) and g.analysis.verdict != "not fitted"]
                candidates = [Candidate(g.candidate, {d: p for d, p in g.points.items() if d},
                                        g.replicates, g.analysis) for g in mine]
                try:
                    found.append((task.name, d_f, compare(
                        candidates, metric, increasing=metric != "cross_entropy",
                        at=at or spec.fit.target_tokens, confidence=confidence,
                        level=spec.fit.interval_level, seed=spec.seed)))
                except ValueError:  # fewer than two candidates, or no checkpoint in common yet
                    continue
    return found


def describe_comparison(c: Comparison, verdicts: dict[str, str] | None = None) -> str:
    """The comparison in the lines a researcher reads: the decision first, then the ranking
    (value, interval, P(best), each candidate's verdict) and every pair's difference."""
    pct, better = f"{c.level:.0%}", "higher" if c.increasing else "lower"
    lines = [f"decision: {c.decision}"]
    if c.note:
        lines.append(f"  ({c.note})")
    width = max(len(row["name"]) for row in c.ranking)
    lines.append(f"  {c.metric} at {tokens(c.at)} tokens, {c.basis} ({better} is better):")
    for rank, row in enumerate(c.ranking, start=1):
        verdict = f"   {verdicts[row['name']]}" if verdicts and row["name"] in verdicts else ""
        lines.append(f"  {rank}. {row['name']:<{width}}  {row['value']:.4g} +- {row['se']:.2g}  "
                     f"{pct} [{row['low']:.4g}, {row['high']:.4g}]  P(best) "
                     f"{row['p_best']:.2f}{verdict}"
                     + ("" if row["read"] == "measured" else f"   ({row['read']})"))
    lines.append("  differences (better - worse):")
    for p in c.pairs:
        lines.append(f"    {p['better']} - {p['worse']}: {p['difference']:+.3g} +- {p['se']:.2g}"
                     f"  {pct} [{p['low']:.3g}, {p['high']:.3g}]  P({p['better']} better) "
                     f"{p['p_better']:.2f}")
    return "\n".join(lines)
