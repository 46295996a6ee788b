"""Tests for raysweep.laws: the paper's two laws and the Huber / L-BFGS-B fitter.

Data are generated from known parameters at D_p log-spaced over 1e5..1e9 (7 checkpoints), with
multiplicative lognormal noise, for several seeds. Tolerances (and the errors measured when they
were chosen) are stated next to each check.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from raysweep.laws import (
    DEFAULT_HUBER_DELTA,
    LAWS,
    LOG_LAW,
    POWER_LAW,
    FitResult,
    fit_law,
    huber,
    law_for_metric,
    objective,
)

D_P = np.logspace(5, 9, 7)
D_EXTRAPOLATE = 10 * D_P[-1]  # one decade past the largest checkpoint


def log_law_value(A, alpha, beta, d):
    return (np.log(A) + alpha * np.log(d)) ** beta


def power_law_value(E, A, alpha, d):
    return E + A / d**alpha


def noisy(values, sigma, seed):
    return values * np.exp(np.random.default_rng(seed).normal(0.0, sigma, np.shape(values)))


# Three BLEU/COMET-like curves: BLEU 15 -> 30 (beta 2), COMET-like 0.4 -> 0.8 (beta 0.5), and a
# BLEU curve linear in log D (beta 1).
LOG_LAW_CASES = [(6.39, 0.175, 2.0), (0.644, 0.052, 0.5), (148.4, 1.5, 1.0)]
# Cross-entropy-like curves: E the floor, A / D^alpha the reducible part.
POWER_LAW_CASES = [(1.8, 400.0, 0.35), (0.5, 50.0, 0.2), (2.5, 1e4, 0.6)]
SEEDS = [0, 1, 2]


# --------------------------------------------------------------------------------------------------
# Huber


def test_huber_quadratic_inside_linear_outside_and_continuous():
    delta = 0.1
    r = np.array([0.0, 0.05, -0.05, 0.1, 0.3, -0.3])
    expected = np.array([0.0, 0.00125, 0.00125, 0.005, 0.1 * (0.3 - 0.05), 0.1 * (0.3 - 0.05)])
    np.testing.assert_allclose(huber(r, delta), expected, rtol=1e-12, atol=1e-15)
    # Continuous at |r| = delta from both sides.
    assert huber(delta * (1 - 1e-9), delta) == pytest.approx(huber(delta * (1 + 1e-9), delta),
                                                             rel=1e-6)


# --------------------------------------------------------------------------------------------------
# Log-law


@pytest.mark.parametrize("case", LOG_LAW_CASES)
@pytest.mark.parametrize("seed", SEEDS)
def test_log_law_fit_predicts_fitted_points_and_extrapolates(case, seed):
    truth = log_law_value(*case, D_P)
    y = noisy(truth, 0.01, seed)  # 1% multiplicative noise
    result = fit_law(LOG_LAW, D_P, y, DEFAULT_HUBER_DELTA["bleu"])

    assert result.law == "log_law" and result.num_points == 7 and result.converged
    assert np.all(LOG_LAW.anchored(result.log_x_ref).in_domain(result.theta, D_P))
    # At the fitted points: within 3% of the noise-free truth (measured max 0.94% over 9 fits).
    fitted_error = np.max(np.abs(result.predict(D_P) / truth - 1))
    assert fitted_error < 0.03, fitted_error
    # One decade past the data: within 10% (measured max 1.7%).
    extrapolation_error = abs(result.predict(D_EXTRAPOLATE)
                              / log_law_value(*case, D_EXTRAPOLATE) - 1)
    assert extrapolation_error < 0.10, extrapolation_error

    # The public (A, alpha, beta) are the paper's parameters: plugging them into the paper's
    # formula reproduces the fitted curve.
    p = result.params
    assert set(p) == {"A", "alpha", "beta"}
    d = np.append(D_P, D_EXTRAPOLATE)
    np.testing.assert_allclose(log_law_value(p["A"], p["alpha"], p["beta"], d), result.predict(d),
                               rtol=1e-6)
    # The reported loss is the stated objective (sum of Huber terms on log values).
    anchored = LOG_LAW.anchored(result.log_x_ref)
    assert result.loss == pytest.approx(objective(anchored, result.theta, D_P, y, 0.1), rel=1e-12)


@pytest.mark.parametrize("case", LOG_LAW_CASES)
def test_log_law_noise_free_data_is_reproduced(case):
    truth = log_law_value(*case, D_P)
    result = fit_law(LOG_LAW, D_P, truth, 0.1)
    # Exact data: the law is recovered, not just approximated (measured max 8e-12 at the points
    # and 1.5e-11 one decade out).
    assert np.max(np.abs(result.predict(D_P) / truth - 1)) < 1e-6
    assert abs(result.predict(D_EXTRAPOLATE) / log_law_value(*case, D_EXTRAPOLATE) - 1) < 1e-5


@pytest.mark.parametrize("case,d_p", [
    (LOG_LAW_CASES[0], np.logspace(3, 6, 6)),
    (LOG_LAW_CASES[2], np.logspace(3, 6, 6)),  # (case 1 is not defined below ~2e4 tokens)
    (LOG_LAW_CASES[0], np.logspace(9, 11, 6)),
    (LOG_LAW_CASES[1], np.logspace(9, 11, 6)),
    (LOG_LAW_CASES[2], np.logspace(9, 11, 6)),
], ids=["case0-1e3-1e6", "case2-1e3-1e6", "case0-1e9-1e11", "case1-1e9-1e11", "case2-1e9-1e11"])
def test_log_law_fit_works_for_other_token_ranges(case, d_p):
    # The box and start grid are data-independent; anchoring at the data centre must make them
    # serve tiny offline runs and paper-scale runs alike.
    truth = log_law_value(*case, d_p)
    result = fit_law(LOG_LAW, d_p, noisy(truth, 0.01, 4), 0.1)
    assert result.converged
    assert result.log_x_ref == pytest.approx(np.mean(np.log(d_p)))
    # Same tolerances as above (measured max 0.9% at the points, 3.7% one decade out).
    assert np.max(np.abs(result.predict(d_p) / truth - 1)) < 0.03
    assert abs(result.predict(10 * d_p[-1]) / log_law_value(*case, 10 * d_p[-1]) - 1) < 0.10


def test_log_law_fits_a_falling_metric_with_a_falling_curve():
    # Misaligned pretraining: BLEU falls as D_p grows (here linearly in log D, which is the
    # log-law with alpha < 0, beta = 1). The fit must follow it rather than fail, so the caller
    # can read off a negative predicted gain.
    truth = np.linspace(30.0, 18.0, D_P.size)
    result = fit_law(LOG_LAW, D_P, noisy(truth, 0.01, 0), 0.1)
    assert result.converged
    assert result.params["alpha"] < 0
    assert np.max(np.abs(result.predict(D_P) / truth - 1)) < 0.03  # measured 1.1%
    # One decade on along the same line in log D: 15 (measured 15.4).
    assert result.predict(D_EXTRAPOLATE) == pytest.approx(15.0, rel=0.10)


def test_log_law_fits_a_pure_power_law_limit():
    # A metric exactly linear in log-log space is the beta -> inf limit of the log-law, which is
    # an interior point (w = 0) of the parameterisation: the fit must converge there, not crawl.
    truth = 2.0 * D_P ** 0.08
    result = fit_law(LOG_LAW, D_P, truth, 0.1)
    assert result.converged
    assert abs(result.theta[2]) < 1e-3  # w ~ 0
    assert np.max(np.abs(result.predict(D_P) / truth - 1)) < 1e-3
    assert result.predict(D_EXTRAPOLATE) == pytest.approx(2.0 * D_EXTRAPOLATE ** 0.08, rel=1e-2)


def test_log_law_is_finite_everywhere_in_the_bounds_box():
    law = LOG_LAW.anchored(np.log(1e7))  # as the fitter would for checkpoints around 1e7 tokens
    rng = np.random.default_rng(0)
    lower, upper = np.array(law.bounds).T
    thetas = rng.uniform(lower, upper, size=(2000, 3))
    thetas[:100, 2] = 0.0  # the pure power-law point
    thetas[100:200, 2] = rng.uniform(-1e-4, 1e-4, size=100)  # the series branch
    x = np.logspace(0, 13, 27)  # 1 token .. 1e13 tokens
    y = log_law_value(6.39, 0.175, 2.0, x.clip(1e5))  # any positive targets
    outside = 0
    for theta in thetas:
        # q = 1 + w z = g(D) / g(D_ref), so q <= 0 <=> log A + alpha log D <= 0: outside the
        # law's domain, where only the floor keeps the value finite.
        outside += int(np.any(1.0 + theta[2] * (np.log(x) - law.log_x_ref) <= 0))
        assert np.all(np.isfinite(law.log_predict(theta, x))), theta
        assert np.isfinite(objective(law, theta, x, y, 0.1)), theta
        value, jac = law.log_predict_grad(theta, x)
        assert np.all(np.isfinite(value)) and np.all(np.isfinite(jac)), theta
    assert outside > 1000  # the sample really exercised the floor


def test_log_law_floor_pushes_back_into_the_domain():
    # With w large enough that the smallest checkpoints fall outside the domain (q <= 0), the
    # floor must give them a large residual that grows with w, so the gradient moves w back, not
    # a flat region the optimiser could stall on.
    law = LOG_LAW.anchored(np.mean(np.log(D_P)))
    x, y = D_P, log_law_value(6.39, 0.175, 2.0, D_P)
    ws = (0.5, 0.6, 0.8, 1.0)  # z spans +-4.6: 1 + w z <= 0 for the first 2 .. 3 points
    assert all(np.any(1 + w * (np.log(x) - law.log_x_ref) <= 0) for w in ws)
    losses = [objective(law, (3.0, 0.1, w), x, y, 0.1) for w in ws]
    assert np.all(np.diff(losses) > 0), losses
    # The out-of-domain cost must not vanish with gamma: a flat curve (gamma = 0) is exp(m) at
    # every point inside the domain, and far below it at points outside (else a near-flat fit
    # could use the floor as a free second segment).
    z = np.log(x) - law.log_x_ref
    out = 1 + 0.5 * z <= 0
    log_pred = law.log_predict((3.0, 0.0, 0.5), x)
    np.testing.assert_allclose(log_pred[~out], 3.0)
    assert np.all(log_pred[out] < 3.0 - 100), log_pred


# --------------------------------------------------------------------------------------------------
# Power law


@pytest.mark.parametrize("case", POWER_LAW_CASES)
@pytest.mark.parametrize("seed", SEEDS)
def test_power_law_recovers_parameters(case, seed):
    E, A, alpha = case
    truth = power_law_value(*case, D_P)
    y = noisy(truth, 0.001, seed)  # 0.1% multiplicative noise
    result = fit_law(POWER_LAW, D_P, y, DEFAULT_HUBER_DELTA["cross_entropy"])

    assert result.law == "power_law" and result.converged
    p = result.params
    # Measured max relative errors over these 9 fits: E 0.95%, A 1.1%, alpha 0.2%; prediction
    # one decade out 0.2%.
    assert p["E"] == pytest.approx(E, rel=0.03)
    assert p["A"] == pytest.approx(A, rel=0.15)
    assert p["alpha"] == pytest.approx(alpha, rel=0.03)
    np.testing.assert_allclose(result.predict(D_P), truth, rtol=0.01)
    assert result.predict(D_EXTRAPOLATE) == pytest.approx(power_law_value(*case, D_EXTRAPOLATE),
                                                          rel=0.02)
    np.testing.assert_allclose(power_law_value(p["E"], p["A"], p["alpha"], D_P),
                               result.predict(D_P), rtol=1e-9)


def test_power_law_is_finite_everywhere_in_the_bounds_box():
    law = POWER_LAW.anchored(np.log(1e7))
    rng = np.random.default_rng(1)
    lower, upper = np.array(law.bounds).T
    thetas = rng.uniform(lower, upper, size=(2000, 3))
    thetas[:200, 0] = 0.0  # E on its lower bound: log E = -inf inside logaddexp
    x = np.logspace(0, 13, 27)
    y = power_law_value(1.8, 400.0, 0.35, x)
    for theta in thetas:
        assert np.all(np.isfinite(law.log_predict(theta, x))), theta
        assert np.isfinite(objective(law, theta, x, y, 1e-3)), theta
        value, jac = law.log_predict_grad(theta, x)
        assert np.all(np.isfinite(value)) and np.all(np.isfinite(jac)), theta


# --------------------------------------------------------------------------------------------------
# Both laws


@pytest.mark.parametrize("law", [LOG_LAW, POWER_LAW], ids=lambda law: law.name)
def test_analytic_gradient_matches_finite_differences(law):
    law = law.anchored(np.log(1e7))
    rng = np.random.default_rng(2)
    x = np.logspace(5, 9, 7)
    for i in range(30):
        if law.name == "log_law":
            # Both signs of w, the series branch (|w z| < 1e-2) and the floor (q <= 0).
            w = [rng.uniform(-0.5, 0.5), rng.uniform(-1e-3, 1e-3), rng.uniform(0.5, 2.0)][i % 3]
            theta = np.array([rng.uniform(-3, 3), rng.uniform(-1, 1), w])
        else:
            theta = np.array([rng.uniform(0, 5), rng.uniform(-5, 3), rng.uniform(0.01, 2.5)])
        value, jac = law.log_predict_grad(theta, x)
        for j in range(len(theta)):
            step = 1e-6 * max(1e-2, abs(theta[j]))
            up, down = theta.copy(), theta.copy()
            up[j] += step
            down[j] -= step
            numeric = (law.log_predict(up, x) - law.log_predict(down, x)) / (2 * step)
            # Central differences lose ~eps * |value| / step to rounding (values reach ~1e5 on
            # the floor's penalty); beyond that, agreement to 1e-5.
            rounding = 8 * np.finfo(float).eps * np.abs(value) / step
            assert np.all(np.abs(jac[:, j] - numeric)
                          <= 1e-5 * np.abs(numeric) + 1e-6 + rounding), (
                theta, j, jac[:, j], numeric)


@pytest.mark.parametrize("law,values", [
    (LOG_LAW, noisy(log_law_value(6.39, 0.175, 2.0, D_P), 0.01, 3)),
    (POWER_LAW, noisy(power_law_value(1.8, 400.0, 0.35, D_P), 0.001, 3)),
], ids=["log_law", "power_law"])
def test_shuffled_input_gives_identical_parameters(law, values):
    delta = 0.1 if law is LOG_LAW else 1e-3
    reference = fit_law(law, D_P, values, delta)
    for seed in range(2):
        order = np.random.default_rng(seed).permutation(D_P.size)
        shuffled = fit_law(law, D_P[order], values[order], delta)
        np.testing.assert_array_equal(shuffled.theta, reference.theta)
        assert shuffled.params == reference.params and shuffled.loss == reference.loss


def test_non_positive_and_non_finite_points_are_dropped_and_reported():
    y = noisy(log_law_value(6.39, 0.175, 2.0, D_P), 0.01, 0)
    x_bad = np.append(D_P, [0.0, -1e6, 1e7, 1e7, np.nan, 1e8])
    y_bad = np.append(y, [20.0, 20.0, 0.0, -3.0, 20.0, np.inf])
    result = fit_law(LOG_LAW, x_bad, y_bad, 0.1)
    clean = fit_law(LOG_LAW, D_P, y, 0.1)
    assert result.num_points == 7
    assert "dropped 6 point" in result.message
    np.testing.assert_array_equal(result.theta, clean.theta)
    assert "dropped" not in clean.message


def test_a_fit_left_outside_the_law_domain_is_flagged():
    # A law that declares its smallest point undefined for every theta: the fitter can only return
    # a solution with that point on the floor, and must say so instead of reporting convergence.
    law = dataclasses.replace(LOG_LAW, _in_domain=lambda theta, z: z > z.min())
    result = fit_law(law, D_P, log_law_value(6.39, 0.175, 2.0, D_P), 0.1)
    assert not result.converged
    assert "law undefined at 1 of 7 points" in result.message


def test_fewer_than_two_usable_points_raise():
    with pytest.raises(ValueError, match="at least 2"):
        fit_law(LOG_LAW, [1e6, 1e7, 0.0], [20.0, -1.0, 25.0], 0.1)
    with pytest.raises(ValueError, match="at least 2"):
        fit_law(POWER_LAW, [], [], 1e-3)
    with pytest.raises(ValueError):
        fit_law(POWER_LAW, [1e6, 1e7], [3.0, 2.5], 0.0)  # delta must be positive


def test_two_points_fit_through_both():
    # The least data the fitter accepts: an underdetermined fit must still pass through both.
    x = np.array([1e6, 1e8])
    # A rising metric for the log-law, a falling cross-entropy for the power law.
    for law, y in ((LOG_LAW, np.array([20.0, 28.0])), (POWER_LAW, np.array([3.0, 2.5]))):
        result = fit_law(law, x, y, 0.1)
        np.testing.assert_allclose(result.predict(x), y, rtol=1e-3)


def test_fit_result_predict_without_the_law_object_uses_the_registry():
    fitted = fit_law(POWER_LAW, D_P, power_law_value(1.8, 400.0, 0.35, D_P), 1e-3)
    bare = FitResult(law=fitted.law, params=fitted.params, theta=fitted.theta, loss=fitted.loss,
                     converged=fitted.converged, num_points=fitted.num_points,
                     message=fitted.message, log_x_ref=fitted.log_x_ref)
    np.testing.assert_array_equal(bare.predict(D_P), fitted.predict(D_P))


def test_metric_defaults():
    assert law_for_metric("cross_entropy") is POWER_LAW
    for metric in ("bleu", "chrf", "rougeL", "comet"):
        assert law_for_metric(metric) is LOG_LAW
        assert DEFAULT_HUBER_DELTA[metric] == 0.1
    assert DEFAULT_HUBER_DELTA["cross_entropy"] == 1e-3
    assert LAWS == {"log_law": LOG_LAW, "power_law": POWER_LAW}
    # A modest start grid keeps a fit well under a second.
    assert LOG_LAW.num_starts <= 500 and POWER_LAW.num_starts <= 500


def test_grid_is_the_cartesian_product_of_starts():
    # A one-start grid must give a (possibly worse) fit and report one start: the grid is used.
    single = dataclasses.replace(LOG_LAW, init_grid=((1.0,), (0.05,), (0.0,)))
    result = fit_law(single, D_P, log_law_value(6.39, 0.175, 2.0, D_P), 0.1)
    assert "best of 1 L-BFGS-B starts" in result.message
    assert "best of 27 starts, polished by L-BFGS-B" in fit_law(LOG_LAW, D_P, log_law_value(
        6.39, 0.175, 2.0, D_P), 0.1).message
    # A law that cannot take a batch of thetas runs L-BFGS-B from every start.
    assert "best of 27 L-BFGS-B starts" in fit_law(dataclasses.replace(LOG_LAW, batched=False),
                                                   D_P, log_law_value(6.39, 0.175, 2.0, D_P),
                                                   0.1).message
