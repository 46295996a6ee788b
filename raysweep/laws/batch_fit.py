"""Many fits of one law at once: a bootstrap's resamples, refitted together from the full fit,
and the start grid of a full fit, screened together before L-BFGS-B polishes the best.

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
one with fit_law, from where the batch left them. Only laws whose callables take a batch of
thetas (Law.batched) can come here.
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
1% noise on 4 to 31 points, 6% of power-law resamples did (22% at 200 steps)."""
MAX_DAMPING = 1e12
"""A row whose step still does not lower f at this damping has stalled."""


def refit_many(law: Law, x, log_ys, huber_delta: float, starts, weights=None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fit `law` (anchored as the starts are) B times: to each row of log_ys (B, n) from one
    start (p,), or to one log_ys (n,) from each of B starts (B, p); x: the n points' D, weights:
    theirs (default 1). Returns thetas (B, p), their scaled losses (B,) and a converged mask."""
    if not law.batched:
        raise ValueError(f"{law.name} cannot be fitted in batches (Law.batched is False)")
    log_ys, starts = np.asarray(log_ys, dtype=float), np.asarray(starts, dtype=float)
    rows = max(log_ys.shape[0] if log_ys.ndim == 2 else 1,
               starts.shape[0] if starts.ndim == 2 else 1)
    log_ys = np.broadcast_to(log_ys, (rows, log_ys.shape[-1]))
    weights = np.ones(log_ys.shape[1]) if weights is None else np.asarray(weights, dtype=float)
    lower, upper = (np.array(side, dtype=float) for side in zip(*law.bounds))
    theta = np.clip(np.broadcast_to(starts, (rows, len(law.bounds))), lower, upper)
    scale = 1.0 / (huber_delta * huber_delta)

    def evaluate(candidates: np.ndarray, targets: np.ndarray):
        # fit.py's scaled objective (_scaled_objective), for a stack of thetas
        log_pred, jac = law.log_predict_grad(candidates, x)
        residual = weights * (targets - log_pred)
        loss = scale * scipy.special.huber(huber_delta, residual).sum(axis=-1)
        return np.where(np.isfinite(loss), loss, np.inf), residual, jac

    loss, residual, jac = evaluate(theta, log_ys)
    damping = np.full(rows, 1e-3)
    converged = np.zeros(rows, dtype=bool)
    todo = np.arange(rows)  # the rows still moving: the others cost nothing more
    for _ in range(MAX_ITERATIONS):
        # Gradient of the scaled Huber sum: d huber(r) / dr = clip(r, -delta, delta).
        psi = weights * np.clip(residual[todo], -huber_delta, huber_delta)
        grad = -scale * np.einsum("bn,bnp->bp", psi, jac[todo])
        at = theta[todo]
        pinned = ((at <= lower) & (grad > 0)) | ((at >= upper) & (grad < 0))
        grad = np.where(pinned, 0.0, grad)
        slope = np.abs(grad).max(axis=1)
        done = slope <= GRADIENT_TOLERANCE
        stalled = ~done & (damping[todo] >= MAX_DAMPING)
        done |= stalled & (slope <= STALLED_GRADIENT * np.maximum(1.0, loss[todo]))
        converged[todo[done]] = True
        keep = ~done & ~stalled
        todo, at, grad, pinned = todo[keep], at[keep], grad[keep], pinned[keep]
        if not todo.size:
            break
        step = _damped_step(grad, pinned, residual[todo], jac[todo], damping[todo], weights,
                            huber_delta, scale)
        candidate = np.clip(at + step, lower, upper)
        new_loss, new_residual, new_jac = evaluate(candidate, log_ys[todo])
        better = new_loss < loss[todo]
        reduction = (loss[todo] - new_loss) / np.maximum.reduce(
            [np.abs(loss[todo]), np.abs(new_loss), np.ones_like(new_loss)])
        converged[todo[better & (damping[todo] <= 1.0) & (reduction <= RELATIVE_REDUCTION)]] = True
        won = todo[better]
        theta[won], loss[won] = candidate[better], new_loss[better]
        residual[won], jac[won] = new_residual[better], new_jac[better]
        damping[todo] = np.where(better, np.maximum(damping[todo] / 3.0, 1e-9), damping[todo] * 4.0)
        todo = todo[~converged[todo]]
    return theta, loss, converged


def _damped_step(grad, pinned, residual, jac, damping, weights, huber_delta: float, scale: float):
    """Levenberg-Marquardt steps (B, p) on the Huber-reweighted Gauss-Newton matrix. IRLS: a point
    beyond delta counts with weight delta / |r| (Huber's), so every point gives curvature, not
    only the quadratic ones; a pinned parameter does not move."""
    irls = np.minimum(1.0, huber_delta / np.maximum(np.abs(residual), huber_delta))
    hessian = scale * np.einsum("bn,bnp,bnq->bpq", weights * weights * irls, jac, jac)
    identity = np.eye(grad.shape[1])
    hessian = np.where(~pinned[:, :, None] & ~pinned[:, None, :], hessian, identity)
    diagonal = np.einsum("bpp->bp", hessian)
    system = hessian + (damping[:, None] * diagonal + 1e-12)[:, :, None] * identity
    try:
        return np.linalg.solve(system, -grad[:, :, None])[:, :, 0]
    except np.linalg.LinAlgError:  # one exactly singular row would stop the whole batch
        return -(np.linalg.pinv(system) @ grad[:, :, None])[:, :, 0]
