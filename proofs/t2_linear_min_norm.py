"""T2: linear regression with more dimensions than points — where GD ends, and what stability says.

Statement. ``f(w; x) = wᵀx``, ``X: (n, d)`` of full row rank ``n < d``, ``L(w) = (1/2n) ‖Xw − y‖²``, GD with
``0 < η < 2/λ_max(XᵀX/n)``.

(a) From ``w_0``, GD converges to ``w* + (I − X⁺X) w_0`` with ``w* = Xᵀ(XXᵀ)⁻¹y``: the null-space part of ``w_0``
    never moves, the row-space part contracts by ``I − ηXᵀX/n``. From ``w_0 = 0`` the limit is ``w*``.
(b) The input sensitivity of the model is ``‖∇_x f‖ = ‖w‖``; over the fixed set ``{w : Xw = y}``
    ``‖w‖² = ‖w*‖² + ‖w − w*‖²`` (the two parts are orthogonal), so ``w*`` is the least input-sensitive
    interpolant.
(c) Stability is uniform: ``H = XᵀX/n`` is the same at every interpolant, so the linear-stability condition
    ``λ_max(H) < 2/η`` holds at all of them or at none. Here the selection is the algorithm's, not stability's.

Checks: sympy on the declared model (``n = 1, d = 2`` symbolic data): input gradient, Pythagoras on the fixed
set, a constant Hessian, and the error recursion of the GD map; numeric GD (``n = 6, d = 15``, batched over
random starts) against ``stability.toy.facts.linear_gd_limit``.
"""

from __future__ import annotations

import sympy as sp
import torch

from proofs._common import Steps, check, check_close, check_zero, generator, main
from stability.toy import catalog, facts
from stability.toy import symbolic as S
from stability.toy.gd import gradient_descent
from stability.toy.twins import torch_twin


def verify(verbose: bool = False) -> None:
    step = Steps(verbose)
    x1, x2, y, t = sp.symbols("x1 x2 y t", real=True)
    eta = sp.Symbol("eta", positive=True)
    model = catalog.linear_regression([[x1, x2]], [y])
    w = sp.Matrix(model.params)
    check_zero(S.input_gradient(model) - w, "∇_x f = w")
    step("symbolic: ∇_x f = w, so the input sensitivity is ‖w‖")
    xv = sp.Matrix([x1, x2])
    w_star = xv * y / (xv.T * xv)[0]
    null = sp.Matrix([-x2, x1])
    w_t = w_star + t * null
    check_zero(S.residuals(model)[0].subs(dict(zip(model.params, w_t))), "w* + t·n interpolates")
    check_zero((w_t.T * w_t)[0] - (w_star.T * w_star)[0] - t**2 * (null.T * null)[0], "‖w‖² = ‖w*‖² + t²‖n‖²")
    step("symbolic: on the fixed set w* + t n, ‖w‖² = ‖w*‖² + t²‖n‖², least at t = 0 (the min-norm interpolant)")
    H = S.hessian(model)
    check(not (H.free_symbols & set(model.params)), "constant Hessian")
    step(f"symbolic: H = {H.tolist()} does not depend on w — every interpolant is equally stable")
    u = sp.Matrix(sp.symbols("u1 u2", real=True))  # any point, written as w* + t n + u
    point = w_star + t * null + u
    G_point = S.gd_map(model, eta).subs(dict(zip(model.params, point)), simultaneous=True)
    limit = w_star + t * null
    check_zero(G_point - limit - (sp.eye(2) - eta * H) * u, "G(w) − limit = (I − ηH)(w − limit)")
    check_zero(H * null, "the null direction is not contracted")
    step("symbolic: G(w) − w_lim = (I − ηH)(w − w_lim) and H n = 0, so the null-space part of w_0 is kept")

    g = generator(5)
    n, d = 6, 15
    X = torch.randn(n, d, generator=g, dtype=torch.float64) / d**0.5
    yv = torch.randn(n, generator=g, dtype=torch.float64)
    tw = torch_twin(catalog.linear_regression(X, yv))
    eta_n = 1.5 / float(torch.linalg.eigvalsh(X.T @ X / n)[-1])
    w0 = torch.cat([torch.zeros(1, d, dtype=torch.float64), torch.randn(4, d, generator=g, dtype=torch.float64)])
    run = gradient_descent(tw.loss, w0, eta_n, 800)
    predicted = facts.linear_gd_limit(X, yv, w0)
    check_close(run.final, predicted, "GD limits = w* + (I − X⁺X) w0", atol=1e-10)
    check_close(run.final[0], facts.min_norm_interpolant(X, yv), "from 0: the min-norm interpolant", atol=1e-10)
    check(bool((run.final.norm(dim=1)[1:] > run.final[0].norm()).all()), "other limits are more input-sensitive")
    sharp = torch.linalg.eigvalsh(torch.stack([tw.hessian(w) for w in run.final]))[:, -1]
    check_close(sharp, sharp[0].expand_as(sharp), "the same sharpness at every limit")
    step(f"numeric GD (n = {n}, d = {d}, η = 1.5/λ_max, 5 starts): limits as predicted, "
         f"equal sharpness {float(sharp[0]):.4f}")  # fmt: skip


if __name__ == "__main__":
    main(verify)
