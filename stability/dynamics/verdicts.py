"""Gradient descent as a map, and when a minimum is a stable fixed point of it.

Full-batch GD is ``G(θ) = θ − η ∇L(θ)``; near a minimum ``θ*`` its linearization is ``I − η H``, which
contracts iff every eigenvalue of ``H`` lies in ``(0, 2/η)`` — for a minimum (``H ⪰ 0``) iff the
sharpness ``λ_max(H) < 2/η`` (Cohen et al. 2021 observe training hovering at this edge). Momentum and
Adam change the threshold and the matrix: :mod:`stability.dynamics.optimizers`.

For SGD with batch ``B`` out of ``n`` the one-dimensional identity of Wu, Ma & E (2018) is
``E θ'² = [(1 − η a)² + η² s² (n − B) / (B (n − 1))] θ²`` for per-sample curvatures ``h_i`` with mean ``a``
and variance ``s²``. :func:`sgd_criterion` evaluates this scalar form. It is exact for one parameter only:
in ``d`` dimensions, with ``a = λ_max(H)`` and ``s² = λ_max(Σ)`` taken from two different matrices, it is
neither necessary nor sufficient (``proofs/sgd_scalar_false_alarm.py``, ``proofs/sgd_scalar_missed.py``);
the d-dimensional statements — necessary, sufficient and exact — are :func:`stability.dynamics.sgd.sgd_stability`.

:func:`gd_criterion` and :func:`sgd_criterion` evaluate conditions for numbers; :func:`gd_stability`
measures ``λ_max`` and ``λ_min`` on a model and a batch, ``(model, x, y, *, lr, ...)``, and applies the
GD criterion. :class:`~stability.dynamics.tracking.StabilityTracker` records them during training.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from stability.checks import check_non_negative, check_positive
from stability.curvature.lanczos import EigenResult
from stability.curvature.measures import hessian_eigenvalues
from stability.errors import BadInputError
from stability.functional import FunctionalModel, Params


def _eigenvalue(value: float | EigenResult, what: str) -> tuple[float, str]:
    if isinstance(value, EigenResult):
        note = "" if value.converged else f" The {what} solver did not converge; the verdict is provisional."
        return float(value.eigenvalues[0]), note
    value = float(value)
    if not math.isfinite(value):
        raise BadInputError(f"sharpness must be a finite number, got {value}")
    return value, ""


@dataclass(frozen=True)
class GDVerdict:
    """Linear stability of full-batch GD at a point with sharpness ``λ_max``.

    Attributes: ``eta_lambda = η λ_max``; ``threshold = 2/η``; ``margin = 2 − η λ_max`` (positive:
    stable); ``stable``: ``0 ≤ η λ_max ≤ 2`` and no negative curvature reported; ``note`` in words;
    ``lambda_min``: the most negative curvature, when it was measured (``None`` otherwise).
    """

    sharpness: float
    lr: float
    eta_lambda: float
    threshold: float
    margin: float
    stable: bool
    note: str
    lambda_min: float | None = None


def gd_criterion(
    sharpness: float | EigenResult, lr: float, *, lambda_min: float | EigenResult | None = None
) -> GDVerdict:
    """Compare ``η λ_max`` with 2.

    ``|1 − η λ| ≤ 1`` for every eigenvalue ``λ`` of ``H`` is needed for the GD map to keep a fixed point;
    with ``H ⪰ 0`` that is ``η λ_max ≤ 2`` (``= 2`` is the marginal edge). Pass ``lambda_min`` (e.g.
    from ``top_eigenvalues(op, which="SA")``) to also catch negative curvature, which GD moves away from.
    ``sharpness`` and ``lambda_min`` may be :class:`EigenResult` s; their convergence is then reflected
    in the note, and a measured ``λ_min`` counts as negative only beyond the solve's accuracy,
    ``λ_min < −max(residual, tol · |λ_max|)`` (a Ritz value with residual ``r`` is within ``r`` of an
    eigenvalue): cross-entropy Hessians are singular (softmax ignores a shift of all logits), and a zero
    eigenvalue found as ``−1e-17`` is not a saddle.
    """
    lam, caveat = _eigenvalue(sharpness, "sharpness")
    lr = check_positive("lr", lr)
    low, low_caveat = _eigenvalue(lambda_min, "λ_min") if lambda_min is not None else (None, "")
    slack = 0.0
    if isinstance(lambda_min, EigenResult):
        slack = max(float(lambda_min.residuals[0]), lambda_min.tol * abs(lam))
    eta_lambda = lr * lam
    stable = 0 <= eta_lambda <= 2
    if low is not None and low + slack < 0:
        stable = False
        note = f"negative curvature λ_min = {low:.3g}: a saddle, which GD leaves."
    elif lam < 0:
        note = "λ_max < 0: every direction curves down, so this is not a minimum."
    elif stable:
        note = f"stable: η λ_max = {eta_lambda:.4g} ≤ 2 (sharpness {lam:.4g} ≤ 2/η = {2 / lr:.4g})."
    else:
        note = f"unstable: η λ_max = {eta_lambda:.4g} > 2 (sharpness {lam:.4g} > 2/η = {2 / lr:.4g})."
    return GDVerdict(lam, lr, eta_lambda, 2 / lr, 2 - eta_lambda, stable, note + caveat + low_caveat, low)


@dataclass(frozen=True)
class SGDVerdict:
    """The one-dimensional identity ``(1 − η a)² + η² s² c ≤ 1``, ``c = (n − B) / (B (n − 1))`` (``kind``
    says so: in ``d`` dimensions use :func:`stability.dynamics.sgd.sgd_stability`).

    Attributes: ``drift_term = (1 − η a)²``; ``noise_term = η² s² c``; ``lhs`` their sum;
    ``margin = 1 − lhs`` (positive: stable); ``max_lr = 2a / (a² + c s²)``, the largest step size
    that satisfies the condition at this ``a, s, B, n``; ``stable``: ``lhs ≤ 1``.
    """

    sharpness: float
    nonuniformity: float
    lr: float
    batch_size: int
    n: int
    noise_factor: float
    drift_term: float
    noise_term: float
    lhs: float
    margin: float
    max_lr: float
    stable: bool
    note: str
    kind: str = "1-D identity"


def sgd_criterion(
    sharpness: float | EigenResult, nonuniformity: float, lr: float, batch_size: int, n: int
) -> SGDVerdict:
    """Evaluate the scalar Wu–Ma–E form (module docstring) for curvature ``a`` and spread ``s ≥ 0``.

    Exact for one parameter (``proofs/sgd_wu_ma_e.py``); in ``d`` dimensions it is neither necessary nor
    sufficient, and :func:`stability.dynamics.sgd.sgd_stability` gives the statements that are. ``B = n`` gives ``c = 0`` and the GD condition ``0 ≤ η a ≤ 2``; smaller batches add the noise term,
    so a non-uniform minimum (large ``s``) can be stable for GD and unstable for SGD.
    """
    a, caveat = _eigenvalue(sharpness, "sharpness")
    s = check_non_negative("nonuniformity s", nonuniformity)
    lr = check_positive("lr", lr)
    if not (isinstance(n, int) and isinstance(batch_size, int) and 1 <= batch_size <= n):
        raise BadInputError(f"need integers 1 <= batch_size <= n, got batch_size={batch_size!r}, n={n!r}")
    c = 0.0 if batch_size == n else (n - batch_size) / (batch_size * (n - 1))
    drift, noise = (1 - lr * a) ** 2, lr**2 * s**2 * c
    lhs = drift + noise
    denom = a**2 + c * s**2
    max_lr = (2 * a / denom if a > 0 else 0.0) if denom > 0 else math.inf
    stable = lhs <= 1
    verdict = "stable" if stable else "unstable"
    note = (f"{verdict} by the one-dimensional identity: (1 − η a)² = {drift:.4g} plus noise η² s² c = {noise:.4g} gives {lhs:.4g} "
            f"{'≤' if stable else '>'} 1; the largest stable step size here is {max_lr:.4g}.")
    return SGDVerdict(a, s, lr, batch_size, n, c, drift, noise, lhs, 1 - lhs, max_lr, stable, note + caveat)


def gd_stability(
    model: nn.Module | FunctionalModel, x: Tensor, y: Tensor, *, lr: float, loss: str = "cross-entropy",
    params: Params | None = None, chunk_size: int | None = None, subset: int | None = None, seed: int = 0,
    tol: float = 1e-3, max_iter: int = 100, **options: Any,
) -> GDVerdict:
    """The GD verdict of :func:`gd_criterion` at the model's point, with ``λ_max`` and ``λ_min`` of the
    Hessian measured by Lanczos (``which="LA"`` and ``"SA"``), so that a saddle is reported as one.

    Arguments as :func:`stability.curvature.hessian_eigenvalues`. Cost: two Lanczos solves, at most
    ``2 (max_iter + 1)`` Hessian-vector products.
    """
    lr = check_positive("lr", lr)
    common = dict(curvature="hessian", loss=loss, params=params, chunk_size=chunk_size, subset=subset, seed=seed,
                  tol=tol, max_iter=max_iter, **options)  # fmt: skip
    top = hessian_eigenvalues(model, x, y, which="LA", **common)
    bottom = hessian_eigenvalues(model, x, y, which="SA", **common)
    return gd_criterion(top, lr, lambda_min=bottom)

