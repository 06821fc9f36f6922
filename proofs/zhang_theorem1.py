"""Zhang et al. (2017), Theorem 1: finite-sample expressivity of a depth-2 ReLU network.

Statement. For any ``n`` distinct points ``x_1..x_n ∈ R^d`` and any real labels ``y_1..y_n`` there are
``a ∈ R^d`` and ``b, w ∈ R^n`` — ``2n + d`` weights — such that ``c(x) = Σ_j w_j max(⟨a, x⟩ − b_j, 0)`` satisfies
``c(x_i) = y_i`` for every ``i``.

Proof (constructive). Choose ``a`` with distinct projections ``z_i = ⟨a, x_i⟩`` (a random Gaussian ``a`` works
with probability one, since ``⟨a, x_i − x_j⟩ = 0`` is a null set for ``x_i ≠ x_j``). Relabel so that
``z_1 < ... < z_n`` and choose ``b_1 < z_1 < b_2 < z_2 < ... < b_n < z_n``. Then ``A_ij = max(z_i − b_j, 0)`` is 0 for
``j > i`` (because ``z_i ≤ z_{j−1} < b_j``) and ``z_i − b_j > 0`` for ``j ≤ i`` (because ``b_j < z_j ≤ z_i``): ``A`` is
lower-triangular with ``det A = Π_i (z_i − b_i) > 0``, so ``w = A⁻¹y`` exists and ``c(x_i) = (Aw)_i = y_i``.

Checks: sympy for ``n = 4`` with the ordering written as positive gaps (``b_1 = z_1 − p_1``,
``b_{i+1} = z_i + q_i``, ``z_{i+1} = b_{i+1} + p_{i+1}``): ``A`` is lower-triangular, ``det A = Π p_i``, and the
solved network interpolates symbolic labels; numerically, ``stability.toy.fit_finite_sample`` on random
data of several sizes (scalar and vector labels), its weight count, its fit through the network, the
autodiff twin of the declared model, and the refusal of coincident points.
"""

from __future__ import annotations

import sympy as sp
import torch

from proofs._common import Steps, check, check_zero, generator, main
from stability.errors import BadInputError
from stability.toy import catalog
from stability.toy.expressivity import fit_finite_sample
from stability.toy.twins import torch_twin


def verify(verbose: bool = False) -> None:
    step = Steps(verbose)
    n = 4
    p = sp.symbols(f"p1:{n + 1}", positive=True)
    q = sp.symbols(f"q1:{n}", positive=True)
    z1 = sp.Symbol("z1", real=True)
    z, b = [z1], [z1 - p[0]]
    for i in range(1, n):
        b.append(z[i - 1] + q[i - 1])
        z.append(b[i] + p[i])
    A = sp.Matrix(n, n, lambda i, j: sp.Max(z[i] - b[j], 0))
    check(all(A[i, j] == 0 for i in range(n) for j in range(i + 1, n)), "A is lower-triangular")
    check(all(sp.ask(sp.Q.positive(A[i, i])) for i in range(n)), "A has a positive diagonal")
    check_zero(A.det() - sp.Mul(*p), "det A = Π p_i")
    step(f"symbolic, n = {n}: with b_1 < z_1 < b_2 < ... < b_n < z_n, A_ij = max(z_i − b_j, 0) is "
         "lower-triangular with det = Π p_i > 0")  # fmt: skip
    y = sp.Matrix(sp.symbols(f"y1:{n + 1}", real=True))
    w = A.LUsolve(y)
    check_zero(A * w - y, "A w = y")
    step("symbolic: w = A⁻¹y fits arbitrary labels")

    g = generator(6)
    for n, d, k in ((1, 3, None), (5, 1, None), (30, 4, None), (50, 60, 3), (300, 20, None)):
        X = torch.randn(n, d, generator=g, dtype=torch.float64)
        Y = torch.randn(n, *(() if k is None else (k,)), generator=g, dtype=torch.float64)
        fit = fit_finite_sample(X, Y, generator=g)
        weights = 2 * n + d if k is None else n * (k + 1) + d
        check(fit.num_weights == weights, f"n = {n}, d = {d}: {fit.num_weights} weights, expected {weights}")
        # exact in exact arithmetic; in float64 within a small multiple of the rounding bound n ε max(|A||w|)
        what = f"n = {n}, d = {d}: fit error {fit.max_fit_error:.1e} vs bound {fit.error_bound:.1e}"
        check(fit.max_fit_error <= 10 * fit.error_bound, what)
        check(int(torch.count_nonzero(torch.triu(fit.design, 1))) == 0, "design is lower-triangular")
        check(bool((torch.diagonal(fit.design) > 0).all()), "design has a positive diagonal")
    step("numeric: fit_finite_sample interpolates random labels for (n, d) up to (300, 20), vector labels too, "
         "to within 10× the float64 rounding bound")

    X = torch.randn(6, 2, generator=g, dtype=torch.float64)
    Y = torch.randn(6, generator=g, dtype=torch.float64)
    fit = fit_finite_sample(X, Y, generator=g)
    tw = torch_twin(catalog.finite_sample_network(X, Y))
    check(float(tw.loss(torch.cat([fit.a, fit.b, fit.w]))) < 1e-25, "the declared model's twin has zero loss")
    step("autodiff twin of the declared network (2n + d parameters) has zero loss at the constructed point")

    try:
        fit_finite_sample(torch.cat([X, X[:1]]), torch.cat([Y, Y[:1] + 1]))
    except BadInputError:
        pass
    else:
        raise AssertionError("coincident points with different labels must be refused")
    step("coincident points are refused (no function fits two labels at one input)")


if __name__ == "__main__":
    main(verify)
