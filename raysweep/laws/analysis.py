"""What a scientist needs beyond the best fit: intervals, a backtest and a verdict, all read
against the noise the sweep measured.

    analyse(law, x, y, delta, se=..., baseline=..., ...) -> Analysis   (JSON-able with .to_dict())

- Noise: each point's standard error (`se`: test-set bootstrap and finetune seeds, combined by
  raysweep.laws.points). Without it (a CSV of bare values) the noise is estimated from the
  scatter of the points (second differences, which cancel a locally linear trend). Where the
  test-set noise the points share was measured (Noise.test_cov, paired replicates: every
  checkpoint is scored on the same sentences), the points' errors form a covariance matrix, and
  every comparison between points uses it: the goodness of fit (r' C^-1 r), the trend, the gain
  over no pretraining, the steps and the bootstrap's draws. The fit itself stays weighted by each
  point's own error, and the backtest's predictive intervals count each held-out point's whole
  error (conservative: they can only miss less).
- Fit: the paper's Huber fit on log values, each point weighted by its relative error, with the
  log-law held to the expected direction (raysweep.laws.forms.directed).
- Intervals (raysweep.laws.intervals): a parametric bootstrap: new points drawn around the fitted
  law with each point's own error (scaled up when the points scatter more than their errors
  say), refitted; percentile intervals of the parameters and of predictions. Nothing is clipped.
- Backtest, the paper's check: fit on the k smallest-D points, and ask whether each held-out
  point lies inside that fit's own predictive interval (its bootstrap plus the point's error).
- Verdict (raysweep.laws.evidence.judge): aligned, misaligned, no effect, or inconclusive with
  what would resolve it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from raysweep.laws import evidence
from raysweep.laws.evidence import ALIGNED, INCONCLUSIVE, MISALIGNED, NO_EFFECT, VERDICTS
from raysweep.laws.fit import FitResult, fit_law, one_blas_thread
from raysweep.laws.forms import Law, directed
from raysweep.laws.intervals import backtest, bootstrap, clean_points, required_x
from raysweep.laws.noise import (
    LAW_MISFIT,
    Noise,
    covariance,
    noise_level,
    point_errors,
    scatter_about_fit,
    shared,
)

__all__ = ["ALIGNED", "INCONCLUSIVE", "LAW_MISFIT", "MISALIGNED", "NO_EFFECT", "VERDICTS",
           "Analysis", "Noise", "analyse", "describe", "noise_level"]

HUBER_SIGMAS = 1.345
"""With measured errors, the Huber delta is at least this many (mean relative) standard errors:
Huber's classic tuning constant, so a residual within the noise counts quadratically. WHY: the
paper's delta (1e-3 for cross-entropy) assumes residuals far below 0.1%; with the demo's 4% test
noise every point sat in the linear, non-smooth part, the fit was an L1 fit, and L-BFGS-B took
~100 iterations per bootstrap refit (up to 700) instead of ~10."""
@dataclass
class Analysis:
    law: str
    num_points: int
    dropped: int
    verdict: str
    reason: str
    provisional: bool = False
    """True while fewer checkpoints than scheduled are in: the verdict may still change."""
    params: dict[str, float] = field(default_factory=dict)
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    level: float = 0.9
    predictions: list[dict] = field(default_factory=list)
    """{"x", "value", "low", "high", "extrapolation"}: extrapolation = x / the largest D fitted;
    beyond it, "more": {"from" (the largest D fitted), "value", "low", "high"}, what the law says
    going on from there to x gives (the value at x minus the value there, in the metric's units:
    negative for a falling cross-entropy)."""
    band: list[dict] = field(default_factory=list)  # the fitted curve with its interval, for plots
    points: list[dict] = field(default_factory=list)
    """{"x", "y", "se"}: the fitted points and the error each was judged with."""
    noise_source: str = ""
    """Where the points' errors come from, in words."""
    gain: dict | None = None
    """Largest checkpoint minus no pretraining: {"x", "value", "se", "low", "high"} (level)."""
    trend: dict | None = None
    """Change of the straight-line trend across the fitted D range: {"value", "se", "low",
    "high"}."""
    chi2: float | None = None
    dof: int | None = None
    p_fit: float | None = None
    backtest: dict | None = None
    drops: list[dict] = field(default_factory=list)
    converged: bool | None = None
    target_y: float | None = None
    required_x: float | None = None
    params_note: str = ""
    """Why no parameters are given, where none are: the law cannot follow the points, or the
    fit runs to a corner where they are not identifiable."""
    law_holds: bool | None = None
    """Whether the law can be read for a prediction: False when it misses the points beyond
    their noise or misses held-out checkpoints (then no prediction or D_p needed is given);
    None when it was not fitted."""
    message: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def _advice(e: evidence.Evidence, noise: Noise | None) -> str:
    """What would resolve an inconclusive verdict: how far the errors must shrink to tell a
    change of min_effect from none, in test sentences and seeds where their shares are known."""
    worst = max([e.trend] + ([e.gain] if e.gain else []), key=lambda c: c.se)
    # The change to resolve: the one measured, if larger than the smallest worth telling.
    effect = max(abs(e.trend.value), e.min_effect)
    factor = worst.se / (effect / evidence.POWER_Z)
    if factor <= 1.2:
        return "; one or two more checkpoints (or a little less noise) should settle it"
    head = f"; to tell a change of {effect:.3g} from none, the errors must shrink {factor:.1f}x"
    if noise is None or not noise.test_var or not noise.test_sentences:
        return head + f" (about {factor * factor:.0f}x the test sentences or seeds per point)"
    seeds = noise.seeds or 1
    # The change's variance, split into its test-set and seed parts (any common unit): measured
    # on the change itself where the shared noise is known, else a point's own parts.
    if worst.test_share is not None:
        test_part, seed_part = worst.test_share, 1.0 - worst.test_share
    else:
        test_part, seed_part = noise.test_var, (noise.seed_var or 0.0) / seeds
    target = (test_part + seed_part) / (factor * factor)
    options = []
    if target > seed_part and test_part > 0:
        sentences = noise.test_sentences * test_part / (target - seed_part)
        options.append(f"about {math.ceil(sentences):,} test sentences (now "
                       f"{noise.test_sentences:,})")
    if noise.seed_var is None:
        options.append("tasks[].seeds >= 2 to measure the finetuning noise")
    elif target > test_part and seed_part > 0:
        options.append(f"{math.ceil(seeds * seed_part / (target - test_part))} seeds (now {seeds})")
    if not options:  # neither alone reaches it: both, each scaled by the factor squared
        options.append(f"about {math.ceil(noise.test_sentences * factor ** 2):,} test sentences "
                       f"and {math.ceil(seeds * factor ** 2)} seeds together (now "
                       f"{noise.test_sentences:,} and {seeds})")
    return head + ": " + ", or ".join(options)


def _change_dict(change: evidence.Change, sign: float, level: float, **extra) -> dict:
    z = float(evidence.stats.norm.ppf(0.5 + level / 2))
    value = sign * change.value  # back in the metric's own direction
    return {**extra, "value": value, "se": change.se, "low": value - z * change.se,
            "high": value + z * change.se}


@one_blas_thread
def analyse(law: Law, x, y, huber_delta: float, *, se=None, baseline: float | None = None,
            baseline_se: float | None = None, noise: Noise | None = None,
            increasing: bool | None = None, predict_at=(), band_at=(),
            target_y: float | None = None, k: int = 4, resamples: int = 1000, level: float = 0.9,
            min_effect: float | None = None, expected_points: int | None = None,
            min_points: int = 3, seed: int = 0) -> Analysis:
    """Fit, bootstrap, backtest and judge. Never raises for bad data: the verdict says why.

    se: each point's standard error (None: estimated from the scatter). baseline, baseline_se:
    the no-pretraining value and its error. increasing: the expected direction (task metrics
    rise, cross-entropy falls); by default the log-law's data rise and other laws' fall.
    min_effect: the smallest change worth telling from none, in the metric's units (default: 2%
    of the baseline, or of the first point). expected_points: the checkpoints scheduled; fewer
    make the verdict provisional. Long because it is the recipe, step by step; each step is a
    call into this module or raysweep.laws.evidence."""
    if law.num_inputs != 1:
        # The verdict's ingredients (distinct D, backtest on the smallest D, trend, the D needed
        # for a target) are defined along one axis; fit_law fits laws of several variables.
        raise ValueError(f"analyse judges laws of one variable; {law.name} takes {law.num_inputs}")
    xs, ys, ses, dropped = clean_points(x, y, se)
    increasing = law.name == "log_law" if increasing is None else increasing
    sign = 1.0 if increasing else -1.0
    base = {"law": law.name, "num_points": int(xs.size), "dropped": dropped, "level": level,
            "target_y": target_y,
            # Points dropped for their value (a BLEU of 0) still arrived: they do not make the
            # verdict provisional, missing checkpoints do.
            "provisional": expected_points is not None and xs.size + dropped < expected_points}
    needed = max(3, min_points, len(law.param_names))
    if np.unique(xs).size < needed:
        return Analysis(**base, verdict=INCONCLUSIVE, reason=(
            f"too few points: {np.unique(xs).size} checkpoint(s) with a positive value; "
            f"{law.name} needs {needed}" + (f" ({dropped} dropped: zero, negative or not finite)"
                                            if dropped else "")))
    law = directed(law, increasing)
    weights = None
    if np.all(np.isfinite(ses) & (ses > 0)):
        weights = np.mean(ses / ys) / (ses / ys)  # relative errors, normalised: see fit_law
        huber_delta = max(huber_delta, HUBER_SIGMAS * float(np.mean(ses / ys)))
    fit = fit_law(law, xs, ys, huber_delta, weights=weights)
    sigma, source, independent = point_errors(xs, ys, ses, noise, scatter_about_fit(fit, xs, ys))
    cov, test_cov = covariance(xs, sigma, noise)
    if test_cov is not None:
        source += "; test-set noise shared between checkpoints measured (paired resamples)"
    log_sigma, log_cov = sigma / ys, cov / np.outer(ys, ys)
    chi2, dof, p_fit, scale = evidence.log_chi2(np.log(ys) - np.log(fit.predict(xs)), log_cov,
                                                len(law.param_names))
    # The largest checkpoint last: each prediction's "more" is read against it, resample by
    # resample.
    boot = bootstrap(law, xs, ys, huber_delta, resamples, level,
                     [*predict_at, *band_at, float(xs[-1])], seed, full=fit,
                     log_sigma=log_sigma, scale=scale, weights=weights, log_cov=log_cov)
    e = _evidence(fit, xs, ys, sigma, cov, test_cov, sign, (chi2, dof, scale), baseline,
                  baseline_se, noise, min_effect, independent)
    verdict, reason, test = _judge(e, lambda: backtest(law, xs, ys, huber_delta, k, log_sigma,
                                                       min(resamples, 200), seed), noise)
    if base["provisional"]:
        reason = f"provisional ({xs.size + dropped} of {expected_points} checkpoints): {reason}"
    return _result(base, fit, boot, e, verdict, reason, test, xs, ys, sigma, source, increasing,
                   predict_at, band_at, target_y)


def _more(fit: FitResult, boot, column: int, last: float, d: float, level: float) -> dict:
    """{"more": ...}: what the law says pretraining from the largest checkpoint `last` on to `d`
    gives, {"from", "value", "low", "high"} (the interval from the same resamples at both ends,
    so what the two share cancels); {} for a `d` not beyond the checkpoints."""
    draws = boot.draws
    if d <= last * (1 + 1e-9) or draws is None or not len(draws):
        return {}
    change = draws[:, column] - draws[:, -1]
    change = change[np.isfinite(change)]
    if not change.size:
        return {}
    low, high = np.percentile(change, [50 * (1 - level), 50 * (1 + level)])
    value = float(fit.predict([d])[0] - fit.predict([last])[0])
    return {"more": {"from": last, "value": value, "low": float(low), "high": float(high)}}


def _evidence(fit: FitResult, xs, ys, sigma, cov, test_cov, sign: float, misfit: tuple,
              baseline, baseline_se, noise: Noise | None, min_effect: float | None,
              independent: bool) -> evidence.Evidence:
    """What the verdict reads (raysweep.laws.evidence): the law's goodness of fit at the
    resolution the answer is read at, the trend across all the checkpoints and across the last
    ones, the gain over no pretraining, and the steps that go the wrong way. misfit: the law's
    (chi2, dof, scatter factor) against the points' own errors."""
    chi2, dof, scale = misfit
    trend = evidence.trend_change(xs, ys, sigma, sign, scale, cov=cov, test_cov=test_cov)
    gain = _gain(xs, ys, sigma, baseline, baseline_se, sign, noise, test_cov is not None)
    reference = abs(baseline) if gain is not None and baseline else abs(ys[0])
    effect = 0.02 * reference if min_effect is None else min_effect
    p_fit = None  # errors estimated from the scatter about the law cannot test it: point_errors
    if independent:
        # The goodness of fit at the resolution the answer is read at: the law may miss each
        # point by up to half the smallest change worth telling, beyond the measured noise.
        # WHY: paired test sets and seeds shrink the errors to a fraction of min_effect, and a
        # tiny model's learning curve is never exactly the law's shape; a misfit no prediction
        # would notice read "the law fails" (the demo's cross-entropy at D_f = 16k: 0.01 nats).
        # The scatter factor `scale` (the intervals' inflation) stays the untolerated one.
        tolerance = np.diag(np.square(0.5 * effect / ys))
        chi2, dof, p_fit, _ = evidence.log_chi2(np.log(ys) - np.log(fit.predict(xs)),
                                                cov / np.outer(ys, ys) + tolerance,
                                                len(fit.theta))
    last = slice(-max(3, -(-xs.size // 2)), None)  # the last half of the checkpoints, >= 3
    tail = evidence.trend_change(xs[last], ys[last], sigma[last], sign, scale,
                                 cov=cov[last, last])
    return evidence.Evidence(
        sign=sign, chi2=chi2, dof=dof, p_fit=p_fit, scale=scale, trend=trend, gain=gain,
        steps=evidence.wrong_way_steps(xs, ys, cov, sign), backtest_misses=[],
        min_effect=effect, tail=tail)


def _result(base: dict, fit: FitResult, boot, e: evidence.Evidence, verdict: str, reason: str,
            test: dict | None, xs, ys, sigma, source: str, increasing: bool, predict_at,
            band_at, target_y: float | None) -> Analysis:
    """The Analysis a reader gets. A law that fails, or does not predict its held-out
    checkpoints, gives no prediction (nor D_p needed); one that cannot follow the points at all
    gives no parameters and no curve; one whose fit runs to a corner, no parameters."""
    cannot_follow, corner = _cannot_follow(fit, xs, increasing), _corner(fit)
    readable = evidence.law_problem(e) is None and cannot_follow is None
    if cannot_follow:
        reason = f"{reason}; {cannot_follow}"
    shown = {} if cannot_follow or corner else fit.params

    def with_interval(d) -> dict:
        return {"x": float(d), "value": float(fit.predict([d])[0]),
                "low": boot.predictions[float(d)][0], "high": boot.predictions[float(d)][1],
                "extrapolation": float(d) / float(xs[-1])}

    level = base["level"]
    return Analysis(
        **base, verdict=verdict, reason=reason, params=shown,
        intervals={k: v for k, v in boot.params.items() if k in shown},
        predictions=[{**with_interval(d), **_more(fit, boot, i, float(xs[-1]), d, level)}
                     for i, d in enumerate(predict_at)] if readable else [],
        band=[with_interval(d) for d in band_at] if cannot_follow is None else [],
        points=[{"x": float(a), "y": float(b), "se": float(s)} for a, b, s in zip(xs, ys, sigma)],
        noise_source=source,
        gain=None if e.gain is None else _change_dict(e.gain, e.sign, level, x=float(xs[-1])),
        trend=_change_dict(e.trend, e.sign, level), chi2=e.chi2, dof=e.dof, p_fit=e.p_fit,
        backtest=test, drops=e.steps, converged=fit.converged,
        required_x=(required_x(fit, target_y, float(xs[0]))
                    if target_y is not None and readable else None),
        law_holds=readable, params_note=cannot_follow or corner or "", message=fit.message)


def _cannot_follow(fit: FitResult, xs, increasing: bool) -> str | None:
    """Why the best fit is no description of the points at all (then neither its parameters nor
    its curve are shown as the law's): a flat curve, the law being held to move the expected way
    and the points not doing so. None for a fit that follows the points, well or badly."""
    if np.ptp(np.log(fit.predict(xs))) < 1e-9:
        return (f"the law cannot follow the points: its best fit is flat (held to "
                f"{'rise' if increasing else 'fall'}, and the points do not), so it gives no "
                f"parameters and no prediction")
    return None


def _corner(fit: FitResult) -> str | None:
    """Where a fit runs to a corner of its parameter space (a parameter infinite or undefined:
    the curve may follow the points, but its parameters are not identifiable), in words."""
    corner = [name for name, value in fit.params.items() if not math.isfinite(value)]
    if not corner:
        return None
    return ("parameters not identifiable: the fit runs to "
            + ", ".join(f"{name} = {fit.params[name]:.3g}" for name in corner)
            + " (read the curve and its predictions, not the parameters)")


def _gain(xs, ys, sigma, baseline, baseline_se, sign: float, noise: Noise | None,
          paired: bool) -> evidence.Change | None:
    """The last checkpoint's change over no pretraining (None without a baseline); with paired
    test sets, the noise the two share cancels from the difference."""
    if baseline is None or not math.isfinite(baseline):
        return None
    base_se = baseline_se if baseline_se is not None and math.isfinite(baseline_se) else sigma[0]
    last = float(xs[-1])
    common = shared(noise, 0.0, last)
    difference_var = (shared(noise, last, last) + shared(noise, 0.0, 0.0) - 2 * common
                      if paired else None)
    return evidence.gain_over_baseline(ys[-1], sigma[-1], baseline, base_se, sign, common,
                                       difference_var)


def _judge(e: evidence.Evidence, run_backtest, noise: Noise | None) -> tuple[str, str, dict | None]:
    """The verdict, its reason (with what would resolve it, when inconclusive) and the backtest.
    The backtest is judged after every other misalignment test, so it can only turn a verdict
    that is not "misaligned" yet; its bootstrap is the costliest step, skipped when it cannot
    change the answer."""
    verdict, reason = evidence.judge(e)
    test = None
    if verdict != MISALIGNED:
        test = run_backtest()
        e.backtest_misses = [r for r in (test or {}).get("held_out", []) if not r["inside"]]
        verdict, reason = evidence.judge(e)
    if verdict == INCONCLUSIVE:
        reason += _advice(e, noise)
    return verdict, reason, test


def extrapolation_words(prediction: dict) -> str:
    """How far a prediction reaches past the largest checkpoint fitted, in words."""
    factor = prediction.get("extrapolation", 1.0)
    if factor <= 1.0:
        return "within the measured range"
    return f"{factor:.3g}x beyond the largest checkpoint" + (" (far: treat with care)"
                                                             if factor > 10 else "")


PARAM_SPREAD = 2.0
"""A law's parameters are read (shown in figures, logged as metrics) only where each interval is
finite, holds the estimate and is at most this many times the estimate wide: beyond, the points
do not pin them down (a log-law's alpha of 813 with an interval up to 1e11)."""


def identifiable(analysis: Analysis | None) -> bool:
    """Whether the law's parameters can be read: the analysis gives them and says the law holds,
    and each one's bootstrap interval is finite, holds it and is at most PARAM_SPREAD times it
    wide (the log-law's A, alpha, beta often trade off: any of them fits)."""
    if analysis is None or not analysis.params or analysis.law_holds is not True:
        return False
    for name, value in analysis.params.items():
        low, high = analysis.intervals.get(name, (math.nan, math.nan))
        try:
            low, high = float(low), float(high)
        except (TypeError, ValueError):
            return False
        if not (math.isfinite(value) and low <= value <= high
                and high - low <= PARAM_SPREAD * abs(value)):
            return False
    return True


def describe(analysis: Analysis, x_name: str = "D", y_name: str = "y") -> str:
    """The analysis in a few lines a researcher reads: verdict, gain, prediction, then details."""
    a = analysis
    pct = f"{a.level:.0%}"
    lines = [f"verdict: {a.verdict}: {a.reason}",
             f"{a.law} fitted to {a.num_points} points ({y_name} vs {x_name})"
             + (f"; {a.dropped} dropped (zero, negative or non-finite)" if a.dropped else "")
             + (f"; errors {a.noise_source}" if a.noise_source else "")]
    for name, change in (("gain over no pretraining", a.gain),
                         ("trend across the points", a.trend)):
        if change:
            lines.append(f"  {name}: {change['value']:+.4g} +- {change['se']:.2g}   {pct} interval "
                         f"[{change['low']:.4g}, {change['high']:.4g}]")
    for p in a.predictions:
        lines.append(f"  prediction at {x_name} = {p['x']:.4g}: {p['value']:.4g}   {pct} interval "
                     f"[{p['low']:.4g}, {p['high']:.4g}] ({extrapolation_words(p)})")
    if a.chi2 is not None:
        fit_test = f"chi2 = {a.chi2:.2f} on {a.dof} dof" + (f", p = {a.p_fit:.2g}" if a.p_fit
                                                            is not None else "")
        lines.append(f"  goodness of fit: {fit_test}")
    if a.params_note:
        lines.append(f"  {a.params_note}")
    for name, value in a.params.items():
        low, high = a.intervals.get(name, (math.nan, math.nan))
        lines.append(f"  {name:6} = {value:.4g}   {pct} interval [{low:.4g}, {high:.4g}]")
    if a.backtest:
        lines.append(f"  backtest (fit on the {a.backtest['fitted_on']} smallest {x_name}, "
                     f"{a.backtest['level']:.0%} predictive intervals): max relative error "
                     f"{a.backtest['max_relative_error']:.2%}")
        for row in a.backtest["held_out"]:
            lines.append(f"    {x_name} = {row['x']:.4g}: observed {row['y']:.4g}, predicted "
                         f"{row['predicted']:.4g} [{row['low']:.4g}, {row['high']:.4g}]"
                         + ("" if row["inside"] else " MISSED"))
    if a.target_y is not None:
        reach = (f"reached at {x_name} = {a.required_x:.4g}" if a.required_x is not None
                 else "not reachable")
        lines.append(f"  target {y_name} = {a.target_y:g}: {reach}")
    return "\n".join(lines)
