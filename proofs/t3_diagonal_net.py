"""T3: the diagonal linear net ``f = Σ_k u_k v_k x_k`` — stability bounds a data-weighted l1 norm.

Statement. The input gradient is ``β = ∇_x f = (u_k v_k)_k``. At an interpolating point of one data point
``(x, y)`` with loss ``½ (f(x) − y)²``:

(a) ``H = g gᵀ`` with ``g = (v_k x_k, u_k x_k)_k``, so the sharpness is ``λ_max = ‖g‖² = Σ_k x_k² (u_k² + v_k²)``;
(b) ``Σ_k x_k² (u_k² + v_k²) − 2 Σ_k x_k² |β_k| = Σ_k x_k² (|u_k| − |v_k|)² ≥ 0``, so
    ``λ_max ≥ 2 Σ_k x_k² |β_k|`` with equality iff every coordinate is balanced (``|u_k| = |v_k|``);
(c) hence a minimum that is linearly stable at step size η has ``Σ_k x_k² |β_k| < 1/η``: stability caps the
    data-weighted l1 norm of β, not ``‖β‖`` — a coordinate where the data are small may carry a large β_k;
(d) over all interpolants the least sharpness is ``2 |y| min_{k: x_k ≠ 0} |x_k|``.
With ``n`` points and the mean loss, ``tr H = Σ_k m_k (u_k² + v_k²) ≥ 2 Σ_k m_k |β_k|``, ``m_k = (1/n) Σ_i x_ik²``,
and ``λ_max ≥ tr H / n`` (``H`` has rank ≤ n at interpolation).

Checks: sympy on the declared model with symbolic data, ``d = 3``; the sign cases of (b); (d) by the bound
``Σ_k |x_k| |x_k β_k| ≥ min_k |x_k| Σ_k |x_k β_k| ≥ min_k |x_k| |y|`` and a point attaining it; autodiff at random
interpolating points, one and several data points.
"""

from __future__ import annotations

import dataclasses
import itertools

import sympy as sp
import torch

from proofs._common import Steps, check, check_close, check_zero, generator, main
from stability.toy import catalog, facts
from stability.toy import symbolic as S
from stability.toy.twins import torch_twin


def verify(verbose: bool = False) -> None:
    step = Steps(verbose)
    d = 3
    x = sp.symbols(f"x1:{d + 1}", real=True)
    y = sp.Symbol("y", real=True)
    model = catalog.diagonal_net([list(x)], [y])
    u, v = model.params[:d], model.params[d:]
    beta = [uk * vk for uk, vk in zip(u, v)]
    check_zero(S.input_gradient(model) - sp.Matrix(beta), "∇_x f = β")
    g = sp.Matrix([*(vk * xk for vk, xk in zip(v, x)), *(uk * xk for uk, xk in zip(u, x))])
    at_interp = {y: model.output_at(x)}
    check_zero(S.hessian(model).subs(at_interp) - g * g.T, "H = g gᵀ at interpolation")
    check_zero((g.T * g)[0] - sum(xk**2 * (uk**2 + vk**2) for xk, uk, vk in zip(x, u, v)), "‖g‖²")
    step("symbolic, d = 3: β = (u_k v_k), H = g gᵀ at interpolation, sharpness ‖g‖² = Σ x_k²(u_k² + v_k²)")

    for signs in itertools.product((1, -1), repeat=2):
        p, q = sp.symbols("p q", positive=True)
        uk, vk = signs[0] * p, signs[1] * q
        check_zero(uk**2 + vk**2 - 2 * sp.Abs(uk * vk) - (sp.Abs(uk) - sp.Abs(vk)) ** 2, f"signs {signs}")
    step("u² + v² − 2|uv| = (|u| − |v|)² in all four sign cases, so λ_max ≥ 2 Σ x_k²|β_k|, equality iff balanced")

    xs = torch.tensor([1.0, 0.5, -2.0], dtype=torch.float64)
    yv = 1.3
    min_sharp = float(facts.diagonal_min_sharpness(xs, yv))
    check_close(min_sharp, 2 * abs(yv) * 0.5, "facts: 2|y| min|x_k|")
    b_best = torch.tensor([0.0, yv / 0.5, 0.0], dtype=torch.float64)
    check_close(xs @ b_best, yv, "the attaining β interpolates")
    check_close(2 * (xs.pow(2) * b_best.abs()).sum(), min_sharp, "and reaches the bound")
    g7 = generator(7)
    for _ in range(200):  # no interpolant is flatter: random β on the hyperplane x·β = y
        b_rand = torch.randn(3, generator=g7, dtype=torch.float64)
        b_rand = b_rand + (yv - xs @ b_rand) * xs / xs.pow(2).sum()
        check(float(2 * (xs.pow(2) * b_rand.abs()).sum()) >= min_sharp - 1e-12, "min sharpness over interpolants")
    step(f"least sharpness over interpolants of x = {xs.tolist()}, y = {yv}: 2|y| min|x_k| = {min_sharp}, "
         "attained by a balanced β on the smallest |x_k|")  # fmt: skip

    g = generator(8)
    for n in (1, 4):
        X = torch.randn(n, d, generator=g, dtype=torch.float64)
        uv = torch.randn(32, 2 * d, generator=g, dtype=torch.float64)
        base = torch_twin(catalog.diagonal_net(X, torch.zeros(n, dtype=torch.float64)))
        for th in uv:
            # labels the net already fits: an interpolating point
            tw = dataclasses.replace(base, Y=X @ (th[:d] * th[d:]))
            H = tw.hessian(th)
            lam = torch.linalg.eigvalsh(H)
            bound = float(facts.diagonal_sharpness_lower_bound(th[:d] * th[d:], X))
            check(float(torch.trace(H)) >= bound - 1e-12, "tr H ≥ 2 Σ m_k |β_k|")
            check(float(lam[-1]) >= float(torch.trace(H)) / n - 1e-12, "λ_max ≥ tr H / n")
            if n == 1:
                check_close(lam[-1], (X[0] ** 2 * (th[:d] ** 2 + th[d:] ** 2)).sum(), "λ_max = Σ x_k²(u_k² + v_k²)")
    step("autodiff at 32 random interpolating points, n = 1 and n = 4: λ_max = ‖g‖² (n = 1), "
         "tr H ≥ 2 Σ m_k|β_k|, λ_max ≥ tr H / n")  # fmt: skip


if __name__ == "__main__":
    main(verify)
