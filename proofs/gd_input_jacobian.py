"""How one gradient-descent step moves when a training input moves.

Statement. For ``L(θ) = (1/n) Σ_j ½ (f(θ; x_j) − y_j)²`` and ``G(θ) = θ − η ∇L(θ)``,

    ∂G/∂x_i = −(η/n) [ g_i ∇_x f(x_i)ᵀ + r_i ∂²f/∂θ∂x (x_i) ],     g_i = ∇_θ f(θ; x_i),  r_i = f(θ; x_i) − y_i,

so at an interpolating point (``r_i = 0``) ``∂G/∂x_i = −(η/n) g_i ∇_x f(x_i)ᵀ``, a rank-one ``(P, D)`` matrix with
``‖∂G/∂x_i‖ = (η/n) ‖∇_θ f(x_i)‖ ‖∇_x f(x_i)‖`` (spectral and Frobenius norms coincide for rank one): how far
*one GD step* moves per unit change of a training input factorizes into a parameter-gradient factor, which
stability caps, and the model's input sensitivity. It is not how far the fixed point moves: that is
``dθ*/dx_i = (1/η) H⁺ ∂G/∂x_i``, independent of ``η`` and smaller where the curvature is larger
(``proofs/fixed_point_displacement.py``), so the two can rank minima in opposite orders.

Checks: sympy with ``f`` an undefined function of two parameters and a 2-D input, ``n = 2``; the library's
symbolic ``gd_input_jacobian`` on T4's fixed branch; autodiff (``jacrev`` through one GD step with respect to
the inputs) on a random tanh network, at interpolation and — with the extra term — away from it. Last, the library's ``update_input_sensitivity`` returns these norms.
"""

from __future__ import annotations

import sympy as sp
import torch
from torch.func import grad, jacfwd, jacrev, vmap

from proofs._common import (
    Steps, check, check_close, check_zero, flatten, generator, main, mlp, mlp_module, mlp_params,
    undefined_mse,
)
from stability.sensitivity.one_step import update_input_sensitivity
from stability.toy import catalog
from stability.toy import symbolic as S


def verify(verbose: bool = False) -> None:
    step = Steps(verbose)
    eta = sp.Symbol("eta", positive=True)
    t, X, ys, outs, L = undefined_mse()
    G = sp.Matrix(t) - eta * sp.Matrix([sp.diff(L, p) for p in t])
    i = 0
    jac = G.jacobian(X[i])
    g_i = sp.Matrix([sp.diff(outs[i], p) for p in t])
    fx_i = sp.Matrix([sp.diff(outs[i], xk) for xk in X[i]])
    r_i = outs[i] - ys[i]
    mixed = sp.Matrix(2, 2, lambda a, b: sp.diff(outs[i], t[a], X[i][b]))
    check_zero(jac + eta / 2 * (g_i * fx_i.T + r_i * mixed), "general formula for ∂G/∂x_i")
    check_zero(jac.subs(ys[i], outs[i]) + eta / 2 * g_i * fx_i.T, "at interpolation: −(η/n) g_i ∇_x f(x_i)ᵀ")
    step("symbolic (F undefined, n = 2, D = 2): ∂G/∂x_i = −(η/n)[g_i ∇_x fᵀ + r_i ∂²f/∂θ∂x], rank one at r_i = 0")

    model = catalog.tanh_two_point()
    for k in range(2):
        lib = S.on_fixed_set(model, S.gd_input_jacobian(model, eta, k))
        x_k = model.points[k][0]
        g_k = S.on_fixed_set(model, sp.Matrix([sp.diff(model.output_at(x_k), p) for p in model.params]))
        fx_k = S.on_fixed_set(model, S.input_gradient(model).subs(dict(zip(model.inputs, x_k))))
        check_zero(lib + eta / 2 * g_k * fx_k.T, f"T4, point {k}: library derivation on the branch")
    step("library: symbolic gd_input_jacobian of T4 on its fixed branch (coth w, w, 0) is −(η/2) g_i ∇_x f(x_i)ᵀ")

    gen = generator(3)
    d, n, e = 3, 6, 0.7
    params = mlp_params(gen, d, widths=(4,))
    flat, unflatten = flatten(params)
    Xn = torch.randn(n, d, generator=gen, dtype=torch.float64)

    def f(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return mlp(unflatten(v), x)

    def step_map(Xin: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        def loss(v: torch.Tensor) -> torch.Tensor:
            return 0.5 * (vmap(f, in_dims=(None, 0))(v, Xin) - labels).pow(2).mean()

        return flat - e * grad(loss)(flat)

    Y = vmap(f, in_dims=(None, 0))(flat, Xn)
    J = jacrev(step_map)(Xn, Y).permute(1, 0, 2)  # (n, P, d)
    g = vmap(grad(f), in_dims=(None, 0))(flat, Xn)
    fx = vmap(grad(f, argnums=1), in_dims=(None, 0))(flat, Xn)
    check_close(J, -e / n * g[:, :, None] * fx[:, None, :], "autodiff at interpolation", atol=1e-14)
    norms = torch.linalg.matrix_norm(J, 2)
    check_close(norms, e / n * g.norm(dim=1) * fx.norm(dim=1), "‖∂G/∂x_i‖ = (η/n)‖g_i‖‖∇_x f‖")
    step(f"autodiff, tanh network with {flat.numel()} parameters: rank-one form and its norm at interpolation")

    r = 0.25 * torch.randn(n, generator=gen, dtype=torch.float64)
    J_off = jacrev(step_map)(Xn, Y - r).permute(1, 0, 2)
    mixed = vmap(jacfwd(grad(f), argnums=1), in_dims=(None, 0))(flat, Xn)  # (n, P, d)
    check_close(J_off, -e / n * (g[:, :, None] * fx[:, None, :] + r[:, None, None] * mixed),
                "autodiff away from interpolation: the residual term", atol=1e-14)  # fmt: skip
    step("autodiff with residuals: the extra −(η/n) r_i ∂²f/∂θ∂x term appears exactly as derived")

    module = mlp_module(unflatten(flat))
    sens = update_input_sensitivity(module, Xn, Y[:, None], lr=e, loss="mse")
    check(sens.assumptions["at_interpolation"], "the library sees the interpolation")
    check_close(sens.gauss_newton_spectral, norms, "stability.update_input_sensitivity: ‖∂G/∂x_i‖ at interpolation")
    check_close(sens.product_bound, norms, "rank one: the product (η/n)‖g_i‖‖∇_x f‖ is the norm itself")
    off = update_input_sensitivity(module, Xn, (Y - r)[:, None], lr=e, loss="mse", exact=True)
    check_close(off.exact_fro, J_off.flatten(1).norm(dim=1), "stability.update_input_sensitivity(exact=True) off interpolation")
    step("the library's update_input_sensitivity gives these norms, with and without residuals")


if __name__ == "__main__":
    main(verify)
