"""Many fits of one law at once: a bootstrap's resamples, refitted together from the full fit.

WHY: the online fitter refits every law after each new checkpoint, each with a 200-resample
bootstrap and a backtest (another 200). One L-BFGS-B run per resample costs ~1 ms of scipy set-up
and 20 to 300 Python-level evaluations: 0.75 s a log-law and 3.5 s a power law on 31 points, so a
paper-sized sweep's 36 laws kept the fitter minutes behind the last result. Here the resamples
are one array (B, n) and every step works on all of them: the same objective as fit.py (the sum
of Huber terms of weighted log residuals, scaled by 1 / delta^2), minimised by Levenberg-Marquardt
on iteratively reweighted least squares (Huber's weights), with the law's bounds kept by fixing
the parameters that sit on a bound and are pushed outwards (a projected Newton step).

A row counts as converged by the tests L-BFGS-B stops on in fit.py, read the same way: a projected
gradient below GRADIENT_TOLERANCE, or a nearly undamped (Gauss-Newton) step that lowers f by no
more than RELATIVE_REDUCTION of it, or a stall (no step lowers f) where fit.py's _converged would
accept the stop (projected gradient below 1e-3 x max(1, f)). The caller refits the others one by
one with fit_law, from where the batch left them. Only laws whose callables take a batch of thetas (Law.batched) can come here.
"""

from __future__ import annotations

import numpy as np
import scipy.special

from raysweep.laws.forms import Law

GRADIENT_TOLERANCE = 1e-8
"""fit.py's gtol: of the scaled objective's projected gradient, absolute."""
RELATIVE_REDUCTION = 1e-12
"""fit.py's ftol: (f_k - f_k+1) / max(|f_k|, |f_k+1|, 1)."""
STALLED_GRADIENT = 1e-3
"""fit.py's _converged: a stopped optimiser is at a minimum if its projected gradient is below
this x max(1, f) (the objective is O(1) per point, so that is a negligible slope)."""
MAX_ITERATIONS = 500
"""Rows still moving after this many steps go to fit_law (L-BFGS-B) from where they are: with
1% noise on 4 to 31 points, 6% of power-law resamples did (26% at 200 steps)."""
MAX_DAMPING = 1e12
"""A row whose step still does not lower f at this damping has stalled."""


def refit_many(law: Law, x, log_ys, huber_delta: float, start, weights=None
               ) -> tuple[np.ndarray, np.ndarray]:
    """Fit `law` (anchored as the start's fit was) to each row of log_ys, shape (B, n), all
    starting from `start` (p,); x: the n points' D, weights: theirs (default 1).
    Returns thetas (B, p) and a converged mask (B,)."""
    if not law.batched:
        raise ValueError(f"{law.name} cannot be fitted in batches (Law.batched is False)")
    log_ys = np.atleast_2d(np.asarray(log_ys, dtype=float))
    rows = log_ys.shape[0]
    weights = np.ones(log_ys.shape[1]) if weights is None else np.asarray(weights, dtype=float)
    lower, upper = (np.array(side, dtype=float) for side in zip(*law.bounds))
    theta = np.clip(np.tile(np.asarray(start, dtype=float), (rows, 1)), lower, upper)
    scale = 1.0 / (huber_delta * huber_delta)

    def evaluate(candidates: np.ndarray):
        log_pred, jac = law.log_predict_grad(candidates, x)
        residual = weights * (log_ys - log_pred)
        loss = scale * scipy.special.huber(huber_delta, residual).sum(axis=-1)
        return np.where(np.isfinite(loss), loss, np.inf), residual, jac

    loss, residual, jac = evaluate(theta)
    damping = np.full(rows, 1e-3)
    converged = np.zeros(rows, dtype=bool)
    identity = np.eye(theta.shape[1])
    for _ in range(MAX_ITERATIONS):
        # Gradient of the scaled Huber sum: d huber(r) / dr = clip(r, -delta, delta).
        grad = -scale * np.einsum("bn,bnp->bp", weights * np.clip(residual, -huber_delta, huber_delta), jac)
        pinned = ((theta <= lower) & (grad > 0)) | ((theta >= upper) & (grad < 0))
        grad = np.where(pinned, 0.0, grad)
        slope = np.abs(grad).max(axis=1)
        converged |= slope <= GRADIENT_TOLERANCE
        stalled = ~converged & (damping >= MAX_DAMPING)
        converged |= stalled & (slope <= STALLED_GRADIENT * np.maximum(1.0, loss))
        active = ~converged & ~stalled
        if not active.any():
            break
        # IRLS: a point beyond delta counts with weight delta / |r| (Huber's), so the
        # Gauss-Newton matrix has curvature from every point, not only the quadratic ones.
        irls = np.minimum(1.0, huber_delta / np.maximum(np.abs(residual), huber_delta))
        hessian = scale * np.einsum("bn,bnp,bnq->bpq", weights * weights * irls, jac, jac)
        free = ~pinned[:, :, None] & ~pinned[:, None, :]
        hessian = np.where(free, hessian, identity)  # a pinned parameter does not move
        diagonal = np.einsum("bpp->bp", hessian)
        system = hessian + (damping[:, None] * diagonal + 1e-12)[:, :, None] * identity
        step = np.linalg.solve(system, -grad[:, :, None])[:, :, 0]
        candidate = np.clip(theta + step, lower, upper)
        new_loss, new_residual, new_jac = evaluate(candidate)
        better = active & (new_loss < loss)
        reduction = (loss - new_loss) / np.maximum(np.maximum(np.abs(loss), np.abs(new_loss)), 1.0)
        converged |= better & (damping <= 1.0) & (reduction <= RELATIVE_REDUCTION)
        theta = np.where(better[:, None], candidate, theta)
        loss = np.where(better, new_loss, loss)
        residual = np.where(better[:, None], new_residual, residual)
        jac = np.where(better[:, None, None], new_jac, jac)
        damping = np.where(better, np.maximum(damping / 3.0, 1e-9),
                           np.where(active, damping * 4.0, damping))
    return theta, converged
