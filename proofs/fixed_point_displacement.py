"""How far the fixed point of gradient descent moves when a training input moves.

Statement. Let ``θ*`` be a minimum of ``L(θ) = (1/n) Σ_j ½ (f(θ; x_j) − y_j)²`` with every residual zero
(interpolation). Moving ``x_i`` and keeping ``∇L(θ*) = 0`` to first order (implicit differentiation) gives
``H dθ* = −(∂∇L/∂x_i) dx_i`` with ``∂∇L/∂x_i = (1/n) g_i ∇_x f(x_i)ᵀ``, ``g_i = ∇_θ f(θ*; x_i)``, so the smallest
such move (the one orthogonal to the valley of minima, ``H v = 0``) is

    dθ*/dx_i = −(1/n) H⁺ g_i ∇_x f(x_i)ᵀ,     ‖dθ*/dx_i‖ = (1/n) ‖H⁺ g_i‖ ‖∇_x f(x_i)‖,

independent of ``η``. One GD step responds as ``∂G/∂x_i = −η ∂∇L/∂x_i`` (``proofs/gd_input_jacobian.py``), so
``dθ*/dx_i = (1/η) H⁺ ∂G/∂x_i``: where the curvature is large, one step moves more and the fixed point less.
On T1 (``f = abx``, one point, ``x0 = y0 = 1``, ``c = y0/x0``): one step ``η |x0 c| √(a² + b²)``, the fixed
point ``|c| / (|x0| √(a² + b²))`` — ``1.41 η`` vs ``0.71`` at the balanced minimum ``a = b = 1`` and
``4.01 η`` vs ``0.25`` at the sharper ``a = 4, b = 1/4``: the two readings rank the minima in opposite orders.

Checks: sympy with ``f`` an undefined function (``n = 2``, two parameters, 2-D inputs) for ``∂∇L/∂x_i`` at
interpolation; sympy on T1 (Moore–Penrose conditions of ``H⁺``, both closed forms and both rankings);
autodiff on a random tanh network with more parameters than samples: implicit differentiation with a
dense pseudo-inverse equals the rank-one form, and re-solving the perturbed fixed point (minimum-norm
Gauss–Newton from ``θ*`` for ``x_i ± ε u``) moves ``θ*`` by it to ``O(ε²)``. Last, the library's
``fixed_point_displacement`` (MINRES) returns these norms.
"""

from __future__ import annotations

import sympy as sp
import torch
from torch.func import grad, hessian, jacfwd, jacrev, vmap

from proofs._common import (
    Steps,
    check,
    check_close,
    check_equal,
    check_zero,
    flatten,
    generator,
    main,
    mlp,
    mlp_module,
    mlp_params,
    undefined_mse,
)
from stability.sensitivity.fixed_point import fixed_point_displacement


def verify(verbose: bool = False) -> None:
    step = Steps(verbose)
    t, X, ys, outs, L = undefined_mse()
    grad_l = sp.Matrix([sp.diff(L, p) for p in t])
    i = 0
    mixed = grad_l.jacobian(X[i]).subs(ys[i], outs[i])
    g_i = sp.Matrix([sp.diff(outs[i], p) for p in t])
    fx_i = sp.Matrix([sp.diff(outs[i], xk) for xk in X[i]])
    check_zero(mixed - g_i * fx_i.T / 2, "∂∇L/∂x_i = (1/n) g_i ∇_x f(x_i)ᵀ at interpolation")
    step("symbolic (F undefined, n = 2): at r_i = 0, ∂∇L/∂x_i = (1/n) g_i ∇_x f(x_i)ᵀ, so dθ*/dx_i = −(1/n) H⁺ g_i ∇_x fᵀ")

    a, b, x0, y0, eta = sp.symbols("a b x0 y0 eta", positive=True)
    g = sp.Matrix([b * x0, a * x0])
    H = g * g.T  # n = 1, at interpolation
    H_pinv = g * g.T / (g.T * g)[0] ** 2
    check_equal(H * H_pinv * H, H, "T1: H H⁺ H = H")
    check_equal(H_pinv * H * H_pinv, H_pinv, "T1: H⁺ H H⁺ = H⁺")
    check_zero(H * H_pinv - (H * H_pinv).T, "T1: H H⁺ symmetric")
    c = y0 / x0
    disp = H_pinv * g * c  # ∇_x f = a b = c on the fixed set
    disp_norm = sp.sqrt(sp.simplify((disp.T * disp)[0]))
    one_step = eta * sp.sqrt((g.T * g)[0]) * c
    r = sp.sqrt(a**2 + b**2)
    check_zero(sp.simplify(disp_norm - c / (x0 * r)), "T1: ‖dθ*/dx0‖ = |c| / (|x0| √(a² + b²))")
    check_zero(sp.simplify(one_step - eta * x0 * c * r), "T1: ‖∂G/∂x0‖ = η |x0 c| √(a² + b²)")
    at = {x0: 1, y0: 1}
    values = {name: (disp_norm.subs(at | pt), (one_step / eta).subs(at | pt))
              for name, pt in {"balanced": {a: 1, b: 1}, "sharp": {a: 4, b: sp.Rational(1, 4)}}.items()}  # fmt: skip
    check_equal(values["balanced"][0], 1 / sp.sqrt(2), "T1 balanced displacement 1/√2")
    check_equal(values["sharp"][0], 4 / sp.sqrt(257), "T1 sharp displacement 4/√257")
    check_equal(values["sharp"][1], sp.sqrt(257) / 4, "T1 sharp one-step √257/4")
    check(values["sharp"][0] < values["balanced"][0] and values["sharp"][1] > values["balanced"][1],
          "T1: the sharper minimum is less displaced and more moved by one step")  # fmt: skip
    step(f"T1 (x0 = y0 = 1): displacement {float(values['balanced'][0]):.4f} vs {float(values['sharp'][0]):.4f}, one step "
         f"{float(values['balanced'][1]):.4f}η vs {float(values['sharp'][1]):.4f}η (balanced vs a = 4, b = 1/4): opposite rankings")

    gen = generator(5)
    d, n = 3, 5
    params = mlp_params(gen, d, widths=(4,))
    flat, unflatten = flatten(params)
    Xn = torch.randn(n, d, generator=gen, dtype=torch.float64)

    def f(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return mlp(unflatten(v), x)

    outputs = vmap(f, in_dims=(None, 0))
    Y = outputs(flat, Xn)

    def loss(v: torch.Tensor, Xin: torch.Tensor) -> torch.Tensor:
        return 0.5 * (outputs(v, Xin) - Y).pow(2).mean()

    Hd = hessian(loss)(flat, Xn)
    pinv = torch.linalg.pinv(Hd, rtol=1e-10, hermitian=True)
    M = jacfwd(grad(loss), argnums=1)(flat, Xn).permute(1, 0, 2)  # (n, D, d)
    implicit = -pinv @ M
    g = vmap(grad(f), in_dims=(None, 0))(flat, Xn)
    fx = vmap(grad(f, argnums=1), in_dims=(None, 0))(flat, Xn)
    rank_one = -(pinv @ g.T).T[:, :, None] * fx[:, None, :] / n
    check_close(implicit, rank_one, "implicit differentiation = −(1/n) H⁺ g_i ∇_x fᵀ", atol=1e-10, rtol=1e-8)
    step(f"autodiff, tanh network with {flat.numel()} parameters and {n} samples: implicit differentiation with a dense H⁺")

    def resolve(Xin: torch.Tensor) -> torch.Tensor:
        """The interpolating point nearest θ* for inputs ``Xin`` (minimum-norm Gauss–Newton from θ*)."""
        v = flat.clone()
        for _ in range(30):
            J = jacrev(outputs)(v, Xin)
            v = v - torch.linalg.pinv(J) @ (outputs(v, Xin) - Y)
        return v

    u = torch.randn(d, generator=gen, dtype=torch.float64)
    for k in range(n):
        eps = 1e-4
        moved = [resolve(Xn.index_add(0, torch.tensor([k]), s * eps * u[None])) for s in (1, -1)]
        finite = (moved[0] - moved[1]) / (2 * eps)
        check_close(finite, implicit[k] @ u, f"re-solved fixed point, sample {k}", atol=1e-7, rtol=1e-6)
    step("re-solving the perturbed fixed point (x_i ± 1e-4 u, minimum-norm Gauss–Newton) moves θ* by dθ*/dx_i u")

    out = fixed_point_displacement(mlp_module(params), Xn, Y[:, None], loss="mse", lr=0.5, tol=1e-11)
    check(out.converged and out.assumptions["at_interpolation"], "the library's solves converge at interpolation")
    check_close(out.displacement_spectral, torch.linalg.matrix_norm(implicit, 2), "fixed_point_displacement ‖dθ*/dx_i‖",
                rtol=1e-7, atol=0)  # fmt: skip
    check_close(out.one_step_spectral, 0.5 * torch.linalg.matrix_norm(M, 2), "its one-step ‖∂G/∂x_i‖", rtol=1e-10, atol=0)
    step("the library's fixed_point_displacement (MINRES on H restricted to its range) gives these norms")


if __name__ == "__main__":
    main(verify)
