"""The first-layer bound: curvature at an interpolating minimum caps input sensitivity at the data.

Statement. Let ``f(θ; x)`` be a scalar network whose first layer is linear, ``z = W x + b`` (``W`` part of θ),
trained with ``L(θ) = (1/n) Σ_i ½ (f(θ; x_i) − y_i)²``, at an interpolating point (``f(θ; x_i) = y_i`` for all i).
Then, with ``g_i = ∇_θ f(θ; x_i)`` and ``H = ∇²L(θ)``,

    (1/n) Σ_i ‖x_i‖² ‖∇_x f(x_i)‖²  ≤  ‖W‖₂² tr H,
    (1/n) Σ_i (x_iᵀ ∇_x f(x_i))²    ≤  ‖W‖_F² tr H.

Proof. (1) At interpolation the residual terms of ``H`` vanish: ``H = (1/n) Σ_i g_i g_iᵀ``, so
``tr H = (1/n) Σ_i ‖g_i‖²``. (2) With ``δ = ∂f/∂z``: ``∇_x f = Wᵀδ`` and ``∇_W f = δ xᵀ`` (bridge identity), so
``‖∇_x f‖ = ‖Wᵀδ‖ ≤ ‖W‖₂ ‖δ‖ = ‖W‖₂ ‖∇_W f‖_F / ‖x‖`` — the operator-norm step is Cauchy–Schwarz,
``⟨Wᵀδ, u⟩ = ⟨δ, W u⟩ ≤ ‖δ‖ ‖W u‖ ≤ ‖δ‖ ‖W‖₂`` for unit ``u``. (3) ``‖∇_W f‖_F² ≤ ‖g‖²`` because ``∇_W f`` is a
block of ``g``. Squaring (2), using (3), averaging over i and (1) gives the first line. For the second,
Cauchy–Schwarz on ``xᵀ∇_x f = ⟨W, ∇_W f⟩`` gives ``(xᵀ∇_x f)² ≤ ‖W‖_F² ‖∇_W f‖_F²``, then (3) and (1).

Checks: sympy for (1) on a generic two-parameter model (undefined function) and for the Frobenius
identity; autodiff on a random tanh network with labels set to its own outputs (exact interpolation):
each step per sample, ``tr`` of the dense Hessian of the loss, and that (1) fails away from interpolation. Last, the library's ``first_layer_bound`` returns the same two sides.
"""

from __future__ import annotations

import sympy as sp
import torch
from torch.func import grad, hessian, vmap

from proofs._common import (
    Steps, check, check_close, check_zero, flatten, generator, main, mlp, mlp_module, mlp_params,
)
from stability.dynamics.bounds import first_layer_bound


def verify(verbose: bool = False) -> None:
    step = Steps(verbose)
    t1, t2 = sp.symbols("theta1 theta2", real=True)
    F = sp.Function("F")
    xs = sp.symbols("x1 x2", real=True)
    ys = sp.symbols("y1 y2", real=True)
    L = sum((F(t1, t2, xi) - yi) ** 2 / 2 for xi, yi in zip(xs, ys)) / 2
    H = sp.hessian(L, (t1, t2))
    gs = [sp.Matrix([sp.diff(F(t1, t2, xi), t) for t in (t1, t2)]) for xi in xs]
    GN = (gs[0] * gs[0].T + gs[1] * gs[1].T) / 2
    at_interp = {yi: F(t1, t2, xi) for xi, yi in zip(xs, ys)}
    check_zero((H - GN).subs(at_interp), "H = (1/n) Σ g gᵀ at interpolation")
    check(not all(sp.simplify(e) == 0 for e in (H - GN)), "H ≠ (1/n) Σ g gᵀ with nonzero residuals")
    step("symbolic: H = (1/n) Σ_i g_i g_iᵀ exactly when the residuals vanish, so tr H = (1/n) Σ_i ‖g_i‖²")

    g = generator(2)
    d, n = 4, 20
    params = mlp_params(g, d, widths=(5, 3))
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    Y = vmap(mlp, in_dims=(None, 0))(params, X)  # labels = outputs: exact interpolation
    flat, unflatten = flatten(params)

    def loss(vec: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        out = vmap(mlp, in_dims=(None, 0))(unflatten(vec), X)
        return 0.5 * (out - labels).pow(2).mean()

    H = hessian(loss)(flat, Y)
    gp = vmap(grad(lambda v, x: mlp(unflatten(v), x)), in_dims=(None, 0))(flat, X)  # (n, P)
    check_close(H, gp.T @ gp / n, "autodiff: H = (1/n) Σ g gᵀ at interpolation", atol=1e-13)
    H_off = hessian(loss)(flat, Y + 0.3)
    check(float((H_off - gp.T @ gp / n).abs().max()) > 1e-3, "away from interpolation H differs from (1/n) Σ g gᵀ")
    trH = torch.trace(H)
    step(f"autodiff: H is the Gauss-Newton matrix at interpolation (not with residuals); tr H = {float(trH):.4f}")

    gx = vmap(grad(mlp, argnums=1), in_dims=(None, 0))(params, X)
    gW = vmap(grad(mlp), in_dims=(None, 0))(params, X)["W0"]
    W = params["W0"]
    spec, frob = torch.linalg.matrix_norm(W, 2), torch.linalg.matrix_norm(W)
    xn, gxn, gWn = X.norm(dim=1), gx.norm(dim=1), gW.flatten(1).norm(dim=1)
    check(bool((xn * gxn <= spec * gWn * (1 + 1e-12)).all()), "‖x‖‖∇_x f‖ ≤ ‖W‖₂ ‖∇_W f‖_F per sample")
    check(bool((gWn**2 <= gp.pow(2).sum(1) * (1 + 1e-12)).all()), "‖∇_W f‖_F² ≤ ‖g‖² per sample")
    check_close(gp.pow(2).sum(1).mean(), trH, "(1/n) Σ ‖g_i‖² = tr H")
    lhs = (xn**2 * gxn**2).mean()
    rhs = spec**2 * trH
    check(bool(lhs <= rhs), f"(1/n) Σ ‖x‖²‖∇_x f‖² = {float(lhs):.4f} ≤ ‖W‖₂² tr H = {float(rhs):.4f}")
    step(f"per-sample steps hold; bound: {float(lhs):.4f} ≤ {float(rhs):.4f}")
    lhs2 = ((X * gx).sum(1) ** 2).mean()
    check(bool(lhs2 <= frob**2 * trH), "(1/n) Σ (xᵀ∇_x f)² ≤ ‖W‖_F² tr H")
    step(f"data-direction form: {float(lhs2):.4f} ≤ ‖W‖_F² tr H = {float(frob**2 * trH):.4f}")

    bound = first_layer_bound(mlp_module(params), X, Y[:, None], loss="mse")
    check(bound.assumptions["curvature_is_hessian"] and bound.holds, "the library states the bound about H")
    check_close(bound.lhs, lhs, "stability.first_layer_bound: left side")
    check_close(bound.rhs, rhs, "stability.first_layer_bound: right side ‖W‖₂² tr H")
    step(f"the library's first_layer_bound gives the same two sides, {bound.lhs:.4f} ≤ {bound.rhs:.4f}")


if __name__ == "__main__":
    main(verify)
