"""Closed forms for the toy models, as derived in ``proofs/`` (each proof re-derives them from the
declarations in :mod:`stability.toy.catalog` and checks these expressions against its own derivation).

Symbolic facts are sympy expressions in the module-level symbols below; facts whose size depends on the
data (T2, T3) are torch functions.

Symbols: ``A, B`` (T1 weights), ``X0, Y0`` (T1 data point), ``R`` (T1 residual ``A B X0 − Y0``), ``ETA``
(learning rate), ``W`` (T4 hidden weight), ``ALPHA`` (T5 angle between features), ``THETA`` (quartic).
"""

from __future__ import annotations

import sympy as sp
import torch
from torch import Tensor

from stability.errors import BadInputError

A, B, X0, Y0, R, W = sp.symbols("a b x0 y0 r w", real=True)


ETA = sp.Symbol("eta", positive=True)


ALPHA = sp.Symbol("alpha", positive=True)


THETA = sp.Symbol("theta", real=True)


_U = sp.tanh(W) ** 2


TWO_LAYER_SCALAR: dict[str, sp.Expr] = {
    # on the fixed set a b = y0 / x0
    "sharpness": X0**2 * (A**2 + B**2),
    "gd_multipliers": sp.Matrix([1, 1 - ETA * X0**2 * (A**2 + B**2)]),
    "stability_margin": 2 - ETA * X0**2 * (A**2 + B**2),  # > 0 ⇔ linearly stable
    "min_sharpness": 2 * sp.Abs(X0 * Y0),
    "max_stable_lr": 1 / sp.Abs(X0 * Y0),  # a stable minimum exists iff η < this
    "balanced_a": sp.sqrt(sp.Abs(Y0 / X0)),
    "balanced_b": sp.sign(Y0 / X0) * sp.sqrt(sp.Abs(Y0 / X0)),
    "input_jacobian_sq": ETA**2 * X0**2 * (Y0 / X0) ** 2 * (A**2 + B**2),  # ‖∂G/∂x0‖² at interpolation
    # anywhere, with R = a b x0 − y0 the residual before the step
    "imbalance_factor": 1 - ETA**2 * X0**2 * R**2,  # (a'² − b'²) = (a² − b²) · factor
}


TANH_TWO_POINT: dict[str, sp.Expr] = {
    # on the fixed branch (coth w, w, 0), loss = mean over the two points of ½ (f − y)²
    "sharpness": 2 * _U + 1 / _U - 2,
    "other_eigenvalue": (1 - _U) ** 2 / _U,
    "argmin_w": sp.atanh(2 ** sp.Rational(-1, 4)),
    "min_sharpness": 2 * sp.sqrt(2) - 2,
    "max_stable_lr": 1 + sp.sqrt(2),
    "slope_at_data": 2 * W / sp.sinh(2 * W),  # f'(±1)
    "slope_at_zero": W * sp.coth(W),  # f'(0)
}


GRADIENT_SPLITTING: dict[str, sp.Expr] = {
    "eigenvalues": sp.Matrix([sp.sin(ALPHA), -sp.sin(ALPHA)]),  # of φ1φ1ᵀ − φ2φ2ᵀ, unit features at angle α
    "escape_multiplier": 1 + ETA * sp.sin(ALPHA),  # GD's growth factor per step along the unstable direction
}


_ROOT = sp.sqrt((ETA - 1) * (ETA + 3))


QUARTIC: dict[str, sp.Expr] = {
    "gd_map": THETA - ETA * THETA * (THETA**2 - 1),
    "fixed_point_multiplier": 1 - 2 * ETA,  # G'(±1)
    "loss_of_stability_lr": sp.Integer(1),
    "two_cycle_sq": sp.Matrix([(ETA + 1 - _ROOT) / (2 * ETA), (ETA + 1 + _ROOT) / (2 * ETA)]),  # p², q²
    "two_cycle_multiplier": 9 - 2 * (1 + ETA) ** 2,  # G'(p) G'(q)
    "period_four_lr": sp.sqrt(5) - 1,  # the 2-cycle's multiplier reaches −1
    "bounded_until_lr": sp.Integer(2),  # [−√((η+2)/η), √((η+2)/η)] is invariant iff η ≤ 2
    "lyapunov_at_2": sp.log(3),  # at η = 2, θ = √2 sin φ conjugates G to φ ↦ 3φ
}


def min_norm_interpolant(X: Tensor, y: Tensor) -> Tensor:
    """``w* = Xᵀ (X Xᵀ)⁻¹ y`` for ``X: (n, d)`` of full row rank ``n ≤ d``: the interpolant of least norm,
    hence of least input sensitivity ``‖∇_x f‖ = ‖w‖``. Cost: one ``n × n`` solve."""
    _full_row_rank(X)
    return X.T @ torch.linalg.solve(X @ X.T, y)


def linear_gd_limit(X: Tensor, y: Tensor, w0: Tensor) -> Tensor:
    """Where GD on ``(1/2n)‖Xw − y‖²`` from ``w0: (..., d)`` converges (for ``0 < η < 2/λ_max(XᵀX/n)``):
    ``w* + (I − X⁺X) w0`` — the gradient ``Xᵀ(Xw − y)/n`` lies in the row space of ``X``, so the null-space
    part of ``w0`` never moves. Returns ``(..., d)``."""
    _full_row_rank(X)
    coeff = torch.linalg.solve(X @ X.T, (w0 @ X.T).unsqueeze(-1)).squeeze(-1)
    return min_norm_interpolant(X, y) + w0 - coeff @ X


def diagonal_sharpness_lower_bound(beta: Tensor, X: Tensor) -> Tensor:
    """``2 Σ_k m_k |β_k|``, ``m_k = (1/n) Σ_i x_ik²``: a lower bound on ``tr H`` at an interpolating point of
    the diagonal net, equal to the sharpness bound ``2 Σ_k x_k² |β_k|`` for one point. ``beta: (..., d)``."""
    return 2 * (beta.abs() * X.pow(2).mean(0)).sum(-1)


def diagonal_min_sharpness(x: Tensor, y: float) -> Tensor:
    """``min`` sharpness over the interpolants of one point ``x: (d,)``: ``2 |y| min_{k: x_k ≠ 0} |x_k|``
    (balanced weights, all of ``β`` on the coordinate where the data are smallest but not zero)."""
    size = x.abs()
    if not torch.any(size > 0):
        raise BadInputError("x is all zeros, so no diagonal net interpolates a nonzero label; give a nonzero x")
    return 2 * abs(y) * size[size > 0].min()


def _full_row_rank(X: Tensor) -> None:
    n, d = X.shape
    if n > d or torch.linalg.matrix_rank(X) < n:
        raise BadInputError(f"X: ({n}, {d}) must have full row rank n ≤ d for a unique min-norm interpolant")
