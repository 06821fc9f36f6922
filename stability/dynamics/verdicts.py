"""Gradient descent as a map, and when a minimum is a stable fixed point of it.

Full-batch GD is ``G(θ) = θ − η ∇L(θ)``; near a minimum ``θ*`` its linearization is ``I − η H``, which
contracts iff every eigenvalue of ``H`` lies in ``(0, 2/η)`` — for a minimum (``H ⪰ 0``) iff the
sharpness ``λ_max(H) < 2/η`` (Cohen et al. 2021 observe training hovering at this edge).

For SGD with batch ``B`` drawn without replacement from ``n`` samples, Wu, Ma & E (2018) require, in
mean square, ``(1 − η a)² + η² s² (n − B) / (B (n − 1)) ≤ 1`` with sharpness ``a = λ_max(H)`` and
non-uniformity ``s² = λ_max(Σ)``, ``Σ = (1/n) Σ_i H_i² − H²`` (``H_i`` the Hessian of sample ``i``'s loss).
*(Our reading:)* for one parameter this is exactly the mean-square stability condition of the
linearized SGD map; in many dimensions ``a`` and ``s`` are worst-case eigenvalues of two different
matrices, so the verdict is the paper's criterion rather than an exact characterization.

:class:`StabilityTracker` records these quantities during training, independently of any training loop.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from stability.curvature.lanczos import EigenResult
from stability.errors import BadInputError


def _positive(name: str, value: float) -> float:
    value = float(value)
    if not (value > 0 and math.isfinite(value)):
        raise BadInputError(f"{name} must be a positive finite number, got {value}")
    return value


def _sharpness(value: float | EigenResult) -> tuple[float, str]:
    if isinstance(value, EigenResult):
        note = "" if value.converged else " The sharpness solver did not converge; the verdict is provisional."
        return float(value.eigenvalues[0]), note
    value = float(value)
    if not math.isfinite(value):
        raise BadInputError(f"sharpness must be a finite number, got {value}")
    return value, ""


@dataclass(frozen=True)
class GDVerdict:
    """Linear stability of full-batch GD at a point with sharpness ``λ_max``.

    Attributes: ``eta_lambda = η λ_max``; ``threshold = 2/η``; ``margin = 2 − η λ_max`` (positive:
    stable); ``stable``: ``0 ≤ η λ_max ≤ 2`` and no negative curvature reported; ``note`` in words.
    """

    sharpness: float
    lr: float
    eta_lambda: float
    threshold: float
    margin: float
    stable: bool
    note: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def gd_stability(sharpness: float | EigenResult, lr: float, *, lambda_min: float | None = None) -> GDVerdict:
    """Compare ``η λ_max`` with 2.

    ``|1 − η λ| ≤ 1`` for every eigenvalue ``λ`` of ``H`` is needed for the GD map to keep a fixed point;
    with ``H ⪰ 0`` that is ``η λ_max ≤ 2`` (``= 2`` is the marginal edge). Pass ``lambda_min`` (e.g.
    from ``top_eigenvalues(op, which="SA")``) to also catch negative curvature, which GD moves away from.
    ``sharpness`` may be an :class:`EigenResult`; its convergence is then reflected in the note.
    """
    lam, caveat = _sharpness(sharpness)
    lr = _positive("lr", lr)
    eta_lambda = lr * lam
    stable = 0 <= eta_lambda <= 2
    if lambda_min is not None and float(lambda_min) < 0:
        stable = False
        note = f"negative curvature λ_min = {float(lambda_min):.3g}: a saddle, which GD leaves."
    elif lam < 0:
        note = "λ_max < 0: every direction curves down, so this is not a minimum."
    elif stable:
        note = f"stable: η λ_max = {eta_lambda:.4g} ≤ 2 (sharpness {lam:.4g} ≤ 2/η = {2 / lr:.4g})."
    else:
        note = f"unstable: η λ_max = {eta_lambda:.4g} > 2 (sharpness {lam:.4g} > 2/η = {2 / lr:.4g})."
    return GDVerdict(lam, lr, eta_lambda, 2 / lr, 2 - eta_lambda, stable, note + caveat)


@dataclass(frozen=True)
class SGDVerdict:
    """The Wu–Ma–E condition ``(1 − η a)² + η² s² c ≤ 1`` with ``c = (n − B) / (B (n − 1))``.

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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sgd_stability(
    sharpness: float | EigenResult, nonuniformity: float, lr: float, batch_size: int, n: int
) -> SGDVerdict:
    """Evaluate the Wu–Ma–E condition (module docstring) for sharpness ``a``, non-uniformity ``s ≥ 0``.

    ``B = n`` gives ``c = 0`` and the GD condition ``0 ≤ η a ≤ 2``; smaller batches add the noise term,
    so a non-uniform minimum (large ``s``) can be stable for GD and unstable for SGD.
    """
    a, caveat = _sharpness(sharpness)
    s = float(nonuniformity)
    if not (s >= 0 and math.isfinite(s)):
        raise BadInputError(f"nonuniformity s must be a non-negative finite number, got {s}")
    lr = _positive("lr", lr)
    if not (isinstance(n, int) and isinstance(batch_size, int) and 1 <= batch_size <= n):
        raise BadInputError(f"need integers 1 <= batch_size <= n, got batch_size={batch_size!r}, n={n!r}")
    c = 0.0 if batch_size == n else (n - batch_size) / (batch_size * (n - 1))
    drift, noise = (1 - lr * a) ** 2, lr**2 * s**2 * c
    lhs = drift + noise
    denom = a**2 + c * s**2
    max_lr = (2 * a / denom if a > 0 else 0.0) if denom > 0 else math.inf
    stable = lhs <= 1
    verdict = "stable" if stable else "unstable"
    note = (f"{verdict}: (1 − η a)² = {drift:.4g} plus noise η² s² c = {noise:.4g} gives {lhs:.4g} "
            f"{'≤' if stable else '>'} 1; the largest stable step size here is {max_lr:.4g}.")
    return SGDVerdict(a, s, lr, batch_size, n, c, drift, noise, lhs, 1 - lhs, max_lr, stable, note + caveat)
