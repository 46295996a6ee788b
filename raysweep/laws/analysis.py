"""What a scientist needs beyond the best fit: intervals, a backtest, a diagnosis and a verdict.

    analyse(law, x, y, delta, ...) -> Analysis   (JSON-able with .to_dict())

- Bootstrap over points: resample (D, y) pairs with replacement, refit, and take percentile
  intervals of the parameters and of predictions at any D (Besiroglu et al. 2024 do the same for
  Chinchilla). Resamples with fewer distinct D than the law has parameters are skipped (counted).
- Backtest, the paper's check: fit on the k smallest-D points (k = 4 by default) and predict the
  rest. The paper does not define its error; raysweep reports the relative error |pred - y| / |y|
  per held-out point and their maximum.
- Monotonicity: the paper's sign of misalignment is a task metric that falls (or cross-entropy
  that rises) as D grows. A drop counts only when it is larger than the noise, estimated from the
  second differences of the points (they cancel a locally linear trend; for i.i.d. noise of
  standard deviation s their spread is sqrt(6) s), or given by the caller (e.g. from seed repeats).
- Verdict, following the paper's practical guide: "too few points", "misaligned: ..." (a
  significant drop, a failed fit, or a law that does not predict its held-out points) or
  "aligned: the law holds and predicts".
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from raysweep.laws.fit import FitResult, fit_law
from raysweep.laws.forms import Law

TOO_FEW = "too few points"
MISALIGNED = "misaligned"
ALIGNED = "aligned"


def _clean(x, y) -> tuple[np.ndarray, np.ndarray, int]:
    x = np.asarray(x, dtype=float).ravel()
    y = np.asarray(y, dtype=float).ravel()
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same length, got {x.size} and {y.size}")
    usable = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    order = np.lexsort((y[usable], x[usable]))
    return x[usable][order], y[usable][order], int((~usable).sum())


@dataclass
class Bootstrap:
    level: float
    resamples: int
    failed: int
    params: dict[str, tuple[float, float]]
    predictions: dict[float, tuple[float, float]]


def bootstrap(law: Law, x, y, huber_delta: float, resamples: int = 1000, level: float = 0.9,
              at=(), seed: int = 0, full: FitResult | None = None) -> Bootstrap:
    """Percentile intervals of the parameters and of predictions at each D in `at`.

    full: the fit of all points, when the caller has it already (the resamples start from it)."""
    x, y, _ = _clean(x, y)
    full = full or fit_law(law, x, y, huber_delta)
    rng = np.random.default_rng(seed)
    params: list[dict] = []
    predictions: list[np.ndarray] = []
    failed = 0
    at = np.asarray(list(at), dtype=float)
    for _ in range(resamples):
        index = rng.integers(0, x.size, x.size)
        if np.unique(x[index]).size < len(law.param_names):
            failed += 1
            continue
        try:  # warm start from the full data's optimum, in the same anchoring
            fit = fit_law(law, x[index], y[index], huber_delta, start_points=[full.theta],
                          log_x_ref=full.log_x_ref)
        except ValueError:
            failed += 1
            continue
        params.append(fit.params)
        if at.size:
            predictions.append(fit.predict(at))
    tail = (1 - level) / 2 * 100

    def interval(values) -> tuple[float, float]:
        values = np.asarray(values, dtype=float)
        values = values[np.isfinite(values)]
        if values.size == 0:
            return (math.nan, math.nan)
        low, high = np.percentile(values, [tail, 100 - tail])
        return (float(low), float(high))

    names = params[0].keys() if params else ()
    param_intervals = {n: interval([p[n] for p in params]) for n in names}
    prediction_intervals = ({float(d): interval(np.asarray(predictions)[:, i]) for i, d in enumerate(at)}
                            if predictions else {float(d): (math.nan, math.nan) for d in at})
    return Bootstrap(level, resamples, failed, param_intervals, prediction_intervals)


@dataclass
class Backtest:
    fitted_on: int
    held_out: list[dict]  # {"x", "y", "predicted", "relative_error"}
    max_relative_error: float


def backtest(law: Law, x, y, huber_delta: float, k: int = 4) -> Backtest | None:
    """Fit on the k smallest-D points, predict the others. None if there is nothing to hold out."""
    x, y, _ = _clean(x, y)
    if x.size <= k or k < 2:
        return None
    fit = fit_law(law, x[:k], y[:k], huber_delta)
    predicted = fit.predict(x[k:])
    rows = [{"x": float(d), "y": float(v), "predicted": float(p),
             "relative_error": float(abs(p - v) / abs(v))}
            for d, v, p in zip(x[k:], y[k:], predicted)]
    return Backtest(k, rows, max(r["relative_error"] for r in rows))


def noise_level(y) -> float:
    """Noise standard deviation from second differences (robust: median absolute value)."""
    y = np.asarray(y, dtype=float)
    if y.size < 3:
        return 0.0
    second = y[:-2] - 2 * y[1:-1] + y[2:]
    return float(np.median(np.abs(second)) / 0.6745 / math.sqrt(6))


def significant_drops(x, y, increasing: bool, noise: float, sigmas: float = 2.0) -> list[dict]:
    """Consecutive steps that go the wrong way by more than `sigmas` noise standard deviations."""
    x, y, _ = _clean(x, y)
    sign = 1.0 if increasing else -1.0
    drops = []
    for i in range(x.size - 1):
        change = sign * (y[i + 1] - y[i])
        if change < -sigmas * noise and change < 0:
            drops.append({"from_x": float(x[i]), "to_x": float(x[i + 1]), "change": float(y[i + 1] - y[i])})
    return drops


def required_x(fit: FitResult, target: float, x_min: float, x_max: float = 1e16) -> float | None:
    """The smallest D in [x_min, x_max] where the fitted law reaches `target`, or None."""
    grid = np.logspace(math.log10(x_min), math.log10(x_max), 400)
    values = fit.predict(grid)
    increasing = values[-1] >= values[0]
    reached = values >= target if increasing else values <= target
    if not reached.any():
        return None
    i = int(np.argmax(reached))
    if i == 0:
        return float(grid[0])
    low, high = math.log(grid[i - 1]), math.log(grid[i])  # bisection in log D
    for _ in range(60):
        mid = (low + high) / 2
        value = float(fit.predict([math.exp(mid)])[0])
        if (value >= target) == increasing:
            high = mid
        else:
            low = mid
    return math.exp(high)


@dataclass
class Analysis:
    law: str
    num_points: int
    dropped: int
    verdict: str
    reason: str
    params: dict[str, float] = field(default_factory=dict)
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    level: float = 0.9
    predictions: list[dict] = field(default_factory=list)  # {"x", "value", "low", "high"}
    band: list[dict] = field(default_factory=list)  # the fitted curve with its interval, for plots
    backtest: dict | None = None
    r2_log: float | None = None
    noise: float | None = None
    drops: list[dict] = field(default_factory=list)
    converged: bool | None = None
    target_y: float | None = None
    required_x: float | None = None
    message: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def analyse(law: Law, x, y, huber_delta: float, *, increasing: bool | None = None,
            predict_at=(), band_at=(), target_y: float | None = None, k: int = 4,
            resamples: int = 1000,
            level: float = 0.9, noise: float | None = None, max_backtest_error: float = 0.1,
            min_r2: float = 0.8, seed: int = 0) -> Analysis:
    """Fit, bootstrap, backtest and judge. Never raises for bad data: the verdict says why.

    increasing: the expected direction (task metrics rise, cross-entropy falls); by default the
    log-law's data are expected to rise and other laws' to fall."""
    if law.num_inputs != 1:
        # The verdict's ingredients (distinct D, backtest on the smallest D, monotonicity, the D
        # needed for a target) are defined along one axis; fit_law fits laws of several variables.
        raise ValueError(f"analyse judges laws of one variable; {law.name} takes {law.num_inputs}")
    xs, ys, dropped = _clean(x, y)
    if increasing is None:
        increasing = law.name == "log_law"
    n_params = len(law.param_names)
    distinct = np.unique(xs).size
    base = {"law": law.name, "num_points": int(xs.size), "dropped": dropped, "level": level,
            "target_y": target_y}
    if distinct <= n_params - 1 or distinct < 3:
        return Analysis(**base, verdict=TOO_FEW,
                        reason=f"{distinct} distinct positive D with positive finite values; "
                               f"{max(3, n_params)} are needed to fit and judge {law.name}")
    if np.ptp(ys) == 0:
        return Analysis(**base, verdict=MISALIGNED,
                        reason="the metric does not change with D: pretraining has no effect here")
    fit = fit_law(law, xs, ys, huber_delta)
    log_residuals = np.log(ys) - np.log(fit.predict(xs))
    spread = np.sum((np.log(ys) - np.log(ys).mean()) ** 2)
    r2 = float(1 - np.sum(log_residuals ** 2) / spread) if spread > 0 else 0.0
    sigma = noise_level(ys) if noise is None else noise
    drops = significant_drops(xs, ys, increasing, sigma)
    test = backtest(law, xs, ys, huber_delta, k)
    boot = bootstrap(law, xs, ys, huber_delta, resamples, level, [*predict_at, *band_at], seed,
                     full=fit)

    def with_interval(d) -> dict:
        return {"x": float(d), "value": float(fit.predict([d])[0]),
                "low": boot.predictions[float(d)][0], "high": boot.predictions[float(d)][1]}

    predictions = [with_interval(d) for d in predict_at]
    band = [with_interval(d) for d in band_at]
    needed = required_x(fit, target_y, float(xs[0])) if target_y is not None else None

    if drops:
        verdict, reason = MISALIGNED, (
            f"non-monotonic: {len(drops)} step(s) go the wrong way by more than 2x the noise "
            f"({sigma:.3g})")
    elif not fit.converged or r2 < min_r2:
        verdict, reason = MISALIGNED, (f"the law fails: R^2 in log space {r2:.2f}"
                                       + ("" if fit.converged else ", fit did not converge"))
    elif test is not None and test.max_relative_error > max_backtest_error:
        verdict, reason = MISALIGNED, (
            f"the law does not predict: fitted on the {k} smallest D, it misses the held-out "
            f"points by up to {test.max_relative_error:.1%}")
    elif test is None:
        verdict, reason = ALIGNED, (f"the law holds (R^2 in log space {r2:.2f}); too few points "
                                    f"for a backtest beyond the {k} smallest")
    else:
        verdict, reason = ALIGNED, (f"the law holds (R^2 in log space {r2:.2f}) and predicts its "
                                    f"held-out points within {test.max_relative_error:.1%}")
    return Analysis(**base, verdict=verdict, reason=reason, params=fit.params,
                    intervals=boot.params, predictions=predictions, band=band,
                    backtest=asdict(test) if test else None, r2_log=r2, noise=sigma, drops=drops,
                    converged=fit.converged, required_x=needed, message=fit.message)


def describe(analysis: Analysis, x_name: str = "D", y_name: str = "y") -> str:
    """The analysis in a few lines a researcher reads: parameters, intervals, backtest, verdict."""
    a = analysis
    lines = [f"{a.law} fitted to {a.num_points} points ({y_name} vs {x_name})"
             + (f"; {a.dropped} dropped (zero, negative or non-finite)" if a.dropped else "")]
    pct = f"{a.level:.0%}"
    for name, value in a.params.items():
        low, high = a.intervals.get(name, (math.nan, math.nan))
        lines.append(f"  {name:6} = {value:.4g}   {pct} interval [{low:.4g}, {high:.4g}]")
    if a.r2_log is not None:
        lines.append(f"  R^2 (log space) = {a.r2_log:.3f}; noise estimate {a.noise:.3g}")
    for p in a.predictions:
        lines.append(f"  prediction at {x_name} = {p['x']:.4g}: {p['value']:.4g}   "
                     f"{pct} interval [{p['low']:.4g}, {p['high']:.4g}]")
    if a.backtest:
        lines.append(f"  backtest (fit on the {a.backtest['fitted_on']} smallest {x_name}): "
                     f"max relative error {a.backtest['max_relative_error']:.2%}")
        for row in a.backtest["held_out"]:
            lines.append(f"    {x_name} = {row['x']:.4g}: observed {row['y']:.4g}, "
                         f"predicted {row['predicted']:.4g} ({row['relative_error']:.2%})")
    if a.target_y is not None:
        reach = (f"reached at {x_name} = {a.required_x:.4g}" if a.required_x is not None
                 else "not reachable")
        lines.append(f"  target {y_name} = {a.target_y:g}: {reach}")
    lines.append(f"verdict: {a.verdict}: {a.reason}")
    return "\n".join(lines)
