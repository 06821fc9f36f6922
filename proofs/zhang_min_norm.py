"""Zhang et al. (2017), Section 5: SGD on linear least squares finds the minimum-norm interpolant.

Statement. Let ``X: (n, d)`` have full row rank with ``d ≥ n``, and run SGD (any batches, any positive step
sizes) on ``L(w) = (1/n) Σ_i ½ (x_iᵀw − y_i)²`` from ``w_0 = 0``. Every update ``−η (1/B) Σ_{i∈S} r_i x_i`` lies in
the row space of ``X``, so every iterate is ``w_t = Xᵀ α_t``. If the iterates converge to an interpolant
(``Xw = y``), the limit is ``Xᵀα`` with ``XXᵀα = y``, i.e. ``w* = Xᵀ(XXᵀ)⁻¹y`` — the unique interpolant in the
row space, which is also the interpolant of least Euclidean norm (Lagrange: minimizing ``‖w‖²`` subject to
``Xw = y`` forces ``w = Xᵀμ``). Every interpolant has the same Hessian ``∇²L = XᵀX/n``: curvature cannot be
what selects ``w*``; the algorithm (its implicit restriction to the row space) does.

Checks: sympy for ``n = 2, d = 3`` (the Lagrange conditions, the row-space solution, a Hessian free of ``w``);
numeric SGD (batch 1, seeded order, ``n = 8, d = 30``) from 0, its distance to ``w*`` and the size of its
null-space component along the way.
"""

from __future__ import annotations

import sympy as sp
import torch

from proofs._common import Steps, check, check_close, check_zero, generator, main
from stability.toy import catalog, facts
from stability.toy import symbolic as S


def verify(verbose: bool = False) -> None:
    step = Steps(verbose)
    n, d = 2, 3
    X = sp.Matrix(n, d, lambda i, j: sp.Symbol(f"X{i}{j}", real=True))
    y = sp.Matrix(sp.symbols(f"y0:{n}", real=True))
    w = sp.Matrix(sp.symbols(f"w0:{d}", real=True))
    mu = sp.Matrix(sp.symbols(f"mu0:{n}", real=True))
    lagrangian = (w.T * w)[0] / 2 - (mu.T * (X * w - y))[0]
    stationary = sp.solve(list(sp.Matrix([sp.diff(lagrangian, wi) for wi in w])), list(w), dict=True)[0]
    check_zero(sp.Matrix([stationary[wi] for wi in w]) - X.T * mu, "Lagrange: w = Xᵀμ")
    w_star = X.T * (X * X.T).inv() * y
    check_zero(sp.simplify(X * w_star - y), "Xᵀ(XXᵀ)⁻¹y interpolates")
    step("symbolic: stationarity of ½‖w‖² − μᵀ(Xw − y) gives w = Xᵀμ, and Xw = y then gives w* = Xᵀ(XXᵀ)⁻¹y")

    model = catalog.linear_regression(X.tolist(), list(y))
    H = S.hessian(model)
    check(not (H.free_symbols & set(model.params)), "the Hessian does not depend on w")
    check_zero(H - X.T * X / n, "H = XᵀX/n")
    step("symbolic: H = XᵀX/n at every w, so every interpolant is equally sharp")

    g = generator(4)
    n, d = 8, 30
    Xn = torch.randn(n, d, generator=g, dtype=torch.float64)
    yn = torch.randn(n, generator=g, dtype=torch.float64)
    ws = facts.min_norm_interpolant(Xn, yn)
    check_close(Xn @ ws, yn, "w* interpolates", atol=1e-12)
    proj_null = torch.eye(d, dtype=torch.float64) - torch.linalg.pinv(Xn) @ Xn
    w_t = torch.zeros(d, dtype=torch.float64)
    eta = 0.5 / float(Xn.pow(2).sum(1).max())
    worst_null = 0.0
    for _ in range(400):
        for i in torch.randperm(n, generator=g).tolist():
            w_t = w_t - eta * (Xn[i] @ w_t - yn[i]) * Xn[i]
            worst_null = max(worst_null, float((proj_null @ w_t).norm()))
    check(worst_null < 1e-12, f"SGD iterates stay in the row space (null component ≤ {worst_null:.1e})")
    check_close(w_t, ws, "SGD from 0 converges to the min-norm interpolant", atol=1e-10)
    other = ws + proj_null @ torch.randn(d, generator=g, dtype=torch.float64)
    check_close(Xn @ other, yn, "another interpolant", atol=1e-12)
    check(bool(other.norm() > ws.norm()), "which has a larger norm")
    step(f"numeric SGD (batch 1, n = {n}, d = {d}): null component ≤ {worst_null:.1e}, limit = w* to 1e-10")


if __name__ == "__main__":
    main(verify)
