"""The statistics behind a verdict: what the points say beyond their measured noise.

Every test here compares an effect with its standard error, built from the per-point errors a
sweep measures (test-set bootstrap, finetune seeds; see raysweep.laws.analysis.Noise):

- the law's goodness of fit: chi-square of the log residuals against the points' relative errors;
- the trend: a weighted straight line through (log D, y); its change across the measured range;
- the gain over no pretraining: the largest checkpoint's value against the baseline's;
- wrong-way steps: consecutive checkpoints, each step against its own error.

Significance levels are chosen so that, on simulated studies whose noise is known, each false
alarm stays near 1% and the four verdicts together are >= 95% right where the noise is below the
effect (bench/bench_verdicts.py prints the confusion matrix). `judge` turns the evidence into one
of four verdicts with its reason in words.

Pure numpy/scipy: no Ray, no MLflow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

ALIGNED = "aligned"
MISALIGNED = "misaligned"
NO_EFFECT = "no effect"
INCONCLUSIVE = "inconclusive"
VERDICTS = (ALIGNED, MISALIGNED, NO_EFFECT, INCONCLUSIVE)

Z_ONE_SIDED = float(stats.norm.ppf(0.99))
"""A change counts (gain, trend, harm) beyond z = 2.33 standard errors: 1% one-sided."""
LAW_REJECTED_P = 0.01
"""The law is rejected when its chi-square p-value is below this."""
Z_EQUIVALENT = float(stats.norm.ppf(0.95))
"""No effect: the 90% interval of each change lies within +-min_effect (two one-sided tests)."""
POWER_Z = Z_ONE_SIDED + float(stats.norm.ppf(0.9))
"""To resolve an effect of size m, its standard error must reach m / POWER_Z (1% test, 90%
power): what the 'what would resolve it' advice aims at."""


@dataclass
class Change:
    """An effect (signed so that positive = better) with its standard error."""

    value: float
    se: float
    test_share: float | None = None
    """The share of its variance that is test-set noise (the rest: finetuning seeds), where
    measured: what the advice to resolve an inconclusive verdict aims at."""

    @property
    def z(self) -> float:
        return self.value / self.se if self.se > 0 else math.copysign(math.inf, self.value or 1.0)

    def interval(self, z: float = Z_EQUIVALENT) -> tuple[float, float]:
        return (self.value - z * self.se, self.value + z * self.se)


@dataclass
class Evidence:
    """Everything `judge` needs, all signed so that positive = better for this metric."""

    sign: float
    """+1 for a metric that should rise with D (task metrics), -1 for one that should fall."""
    chi2: float
    """r' C^-1 r of the law's log residuals; C: the points' covariance plus a tolerance of half
    min_effect on each point (raysweep.laws.analysis.analyse says why)."""
    dof: int
    p_fit: float | None
    """p-value of that chi-square (None: no degrees of freedom left to test it)."""
    scale: float
    """sqrt(max(1, chi2 / dof)): how much more the points scatter than their errors say."""
    trend: Change
    """Change of the straight-line trend across the measured D range (better = positive)."""
    gain: Change | None
    """Largest checkpoint minus no pretraining (better = positive); None without a baseline."""
    steps: list[dict]
    """Consecutive steps that go the wrong way beyond the noise (family-wise 1%)."""
    backtest_misses: list[dict]
    """Held-out checkpoints outside the backtest fit's predictive interval."""
    min_effect: float
    """The smallest change worth telling from none, in the metric's units."""
    tail: Change | None = None
    """The trend's change across the last checkpoints alone (the last half, at least 3; better =
    positive): whether more pretraining still pays where the points end."""


def log_chi2(log_residuals, log_cov, num_params: int) -> tuple[float, int, float | None, float]:
    """(chi2, dof, p-value or None, scale) of a fit whose log residuals have this covariance
    (a matrix; or a vector of independent sigmas): r' C^-1 r, so noise the points share (one
    test set) is not counted as if each point had its own."""
    r = np.asarray(log_residuals, dtype=float)
    cov = np.asarray(log_cov, dtype=float)
    cov = np.diag(cov * cov) if cov.ndim == 1 else cov
    chi2, dof = float(r @ np.linalg.solve(cov, r)), int(r.size - num_params)
    if dof < 1:
        return chi2, dof, None, 1.0
    return chi2, dof, float(stats.chi2.sf(chi2, dof)), math.sqrt(max(1.0, chi2 / dof))


def trend_change(x, y, se, sign: float, scale: float, cov=None, test_cov=None) -> Change:
    """Weighted least-squares line y = a + b log D (weights from the points' own errors `se`);
    its change b * (log D_max - log D_min), with the standard error from the points' covariance
    `cov` (default: independent errors `se`), inflated by the scatter factor of whichever
    describes the points better, the law (`scale`) or the line itself: a line is a cruder
    description than a law that holds, so its own lack of fit would double-count curvature; but
    a law that cannot follow the points (a log-law held to rise, on a falling metric) must not
    widen the line's change with its own misfit.
    The slope is linear in y, slope = c.y, so its variance is c' cov c: noise all points share
    moves them together and cancels in the slope. test_cov: the test-set part of cov, for the
    change's test_share."""
    u = np.log(np.asarray(x, dtype=float))
    y = np.asarray(y, dtype=float)
    w = 1.0 / np.asarray(se, dtype=float) ** 2
    u_mean = np.sum(w * u) / np.sum(w)
    c = w * (u - u_mean) / np.sum(w * (u - u_mean) ** 2)
    cov = np.diag(1.0 / w) if cov is None else np.asarray(cov, dtype=float)
    width = float(u.max() - u.min())
    slope = float(c @ y)
    if y.size > 2:  # the line's own scatter factor, as log_chi2 gives the law's
        residual = y - (np.sum(w * y) / np.sum(w) + slope * (u - u_mean))
        line_chi2 = float(residual @ np.linalg.solve(cov, residual))
        scale = min(scale, math.sqrt(max(1.0, line_chi2 / (y.size - 2))))
    variance = max(float(c @ cov @ c), 0.0)
    share = (None if test_cov is None or variance == 0
             else min(max(float(c @ np.asarray(test_cov, dtype=float) @ c) / variance, 0.0), 1.0))
    return Change(sign * slope * width, scale * width * math.sqrt(variance), share)


def difference_se(cov, i: int, j: int) -> float:
    """Standard error of y[j] - y[i] given the points' covariance."""
    return math.sqrt(max(cov[i, i] + cov[j, j] - 2 * cov[i, j], 0.0))


def gain_over_baseline(y_last: float, se_last: float, baseline: float, baseline_se: float,
                       sign: float, shared: float = 0.0, test_var: float | None = None) -> Change:
    """Largest checkpoint minus no pretraining; `shared`: the covariance of their errors (the
    same test set); test_var: the test-set part of the difference's variance, where measured."""
    variance = max(se_last ** 2 + baseline_se ** 2 - 2 * shared, 0.0)
    share = (None if test_var is None or variance == 0
             else min(max(test_var / variance, 0.0), 1.0))
    return Change(sign * (y_last - baseline), math.sqrt(variance), share)


def wrong_way_steps(x, y, cov, sign: float) -> list[dict]:
    """Consecutive steps that go the wrong way by more than z standard errors of the step (from
    the points' covariance `cov`, or independent errors if a vector), with z
    Bonferroni-corrected for the number of steps (family-wise 1%): more checkpoints must not
    mean more false alarms."""
    x, y, cov = (np.asarray(v, dtype=float) for v in (x, y, cov))
    cov = np.diag(cov * cov) if cov.ndim == 1 else cov
    if y.size < 2:
        return []
    z = float(stats.norm.ppf(1 - 0.01 / (y.size - 1)))
    steps = []
    for i in range(y.size - 1):
        change, error = sign * (y[i + 1] - y[i]), difference_se(cov, i, i + 1)
        if change < -z * error:
            steps.append({"from_x": float(x[i]), "to_x": float(x[i + 1]),
                          "change": float(y[i + 1] - y[i]), "se": error})
    return steps


def _number(v: float) -> str:
    return f"{v:.3g}"


def _signed(change: Change, sign: float) -> str:
    """The change in the metric's own direction (a falling cross-entropy shows as negative)."""
    return f"{sign * change.value:+.3g} +- {change.se:.2g}"


def law_problem(e: Evidence) -> str | None:
    """Why the law cannot be read for a prediction, in words: it misses the points beyond their
    noise, or, fitted on the smallest checkpoints, misses held-out ones; None if it holds (or is
    untested)."""
    if e.p_fit is not None and e.p_fit < LAW_REJECTED_P:
        return (f"the law fails: it misses the points by more than their noise and "
                f"+-{_number(e.min_effect / 2)} (chi2 = {e.chi2:.1f} on {e.dof} dof, p = "
                f"{e.p_fit:.2g}; they scatter {e.scale:.1f}x more than their errors)")
    if e.backtest_misses:
        miss = e.backtest_misses[0]
        return (f"the law does not predict: fitted on the smallest checkpoints, it misses "
                f"{len(e.backtest_misses)} held-out one(s) beyond their predictive interval (at "
                f"D = {miss['x']:.3g}: measured {_number(miss['y'])}, interval "
                f"[{_number(miss['low'])}, {_number(miss['high'])}])")
    return None


def _flat(change: Change | None, min_effect: float) -> bool:
    """Whether a change is measured to lie within +-min_effect (its 90% interval inside)."""
    return change is not None and -min_effect < change.interval()[0] \
        and change.interval()[1] < min_effect


def judge(e: Evidence) -> tuple[str, str]:
    """The verdict and its statistical basis, in words. Two questions, kept apart: does the
    pretraining help (the gain over none, the trend, no step the wrong way), and does the law
    hold (law_problem), so that a prediction may be read. Harm and wrong-way movement come first
    (misaligned). A law that fails is the paper's signal of misaligned data, unless the data
    clearly help (the gain's whole interval on the helping side): a metric that helps but that
    the law does not describe (the paper's saturation) is never called misaligned, and its
    reason says whether more data still pays. Then improvement (aligned), equivalence to zero
    (no effect), and otherwise inconclusive."""
    if e.gain is not None and e.gain.z < -Z_ONE_SIDED:
        return MISALIGNED, (f"worse than no pretraining beyond the noise: the largest checkpoint "
                            f"differs from the baseline by {_signed(e.gain, e.sign)} (z = "
                            f"{e.gain.z:.1f})")
    if e.trend.z < -Z_ONE_SIDED:
        return MISALIGNED, (f"goes the wrong way with more pretraining: the trend across the "
                            f"checkpoints is {_signed(e.trend, e.sign)} (z = {e.trend.z:.1f})")
    if e.steps:
        worst = min(e.steps, key=lambda s: e.sign * s["change"] / s["se"])
        return MISALIGNED, (f"non-monotonic: {len(e.steps)} step(s) go the wrong way beyond the "
                            f"noise (worst {worst['change']:+.3g} +- {worst['se']:.2g} from D = "
                            f"{worst['from_x']:.3g} to {worst['to_x']:.3g})")
    problem = law_problem(e)
    helps = e.gain is not None and e.gain.z > Z_EQUIVALENT  # its whole 90% interval
    if problem and not helps:
        return MISALIGNED, problem
    if problem:
        return _helps_without_the_law(e, problem)
    if e.p_fit is not None:
        fit_words = (f"the law describes the points within their noise and "
                     f"+-{_number(e.min_effect / 2)} (chi2 = {e.chi2:.1f} on {e.dof} dof)")
    elif e.dof < 1:
        fit_words = "the law passes through the points (none to spare for a goodness-of-fit test)"
    else:
        fit_words = ("the law follows the points (goodness of fit untested: their noise is "
                     "estimated from their own scatter)")
    if e.trend.z > Z_ONE_SIDED:
        gain = f"; gain over no pretraining {_signed(e.gain, e.sign)}" if e.gain else ""
        return ALIGNED, (f"{fit_words}, and improves with D_p beyond the noise (trend "
                         f"{_signed(e.trend, e.sign)}, z = {e.trend.z:.1f}){gain}")
    gain_flat = e.gain is None or _flat(e.gain, e.min_effect)
    helps = e.gain is not None and e.gain.z > Z_ONE_SIDED  # beyond the noise, as any change
    if _flat(e.trend, e.min_effect) and (gain_flat or helps):
        reason = (f"more pretraining changes nothing measurable at this D_f: the trend across the "
                  f"checkpoints, {_signed(e.trend, e.sign)}, lies within +-{_number(e.min_effect)}")
        if helps:
            reason += (f"; pretraining itself helps ({_signed(e.gain, e.sign)} over none), but "
                       f"the gain has saturated")
        elif e.gain is not None:
            reason += f", as does the gain over no pretraining, {_signed(e.gain, e.sign)}"
        return NO_EFFECT, reason
    return INCONCLUSIVE, (f"the noise is too large to tell: trend {_signed(e.trend, e.sign)}"
                          + (f", gain over no pretraining {_signed(e.gain, e.sign)}"
                             if e.gain is not None else ""))


def _helps_without_the_law(e: Evidence, problem: str) -> tuple[str, str]:
    """A metric pretraining clearly helps, no step the wrong way, that the law does not describe:
    aligned if it still improves across the checkpoints, no effect (of more data) if it has
    flattened at the last ones, else inconclusive on whether more still pays. No prediction is
    read from the law (raysweep.laws.analysis clears it)."""
    helps = f"pretraining helps ({_signed(e.gain, e.sign)} over none, no step the wrong way)"
    flattened = _flat(e.tail, e.min_effect)
    tail = (f"it flattens at the last checkpoints ({_signed(e.tail, e.sign)} across them, within "
            f"+-{_number(e.min_effect)}): more pretraining changes nothing measurable there"
            if flattened else "")
    no_prediction = f"; but {problem}, so no prediction is read from it"
    if e.trend.z > Z_ONE_SIDED:
        return ALIGNED, (f"{helps} and improves with D_p beyond the noise (trend "
                         f"{_signed(e.trend, e.sign)}, z = {e.trend.z:.1f})"
                         + (f", but {tail}" if tail else "") + no_prediction)
    if flattened or _flat(e.trend, e.min_effect):
        return NO_EFFECT, (f"{helps}, but the gain has saturated: "
                           + (tail or f"the trend across the checkpoints, "
                                      f"{_signed(e.trend, e.sign)}, lies within "
                                      f"+-{_number(e.min_effect)}")
                           + no_prediction)
    return INCONCLUSIVE, (f"{helps}; whether more pretraining still pays, the noise cannot tell "
                          f"(trend {_signed(e.trend, e.sign)})" + no_prediction)
