"""Linear stability of heavy ball, Nesterov and (frozen-preconditioner) Adam at a minimum.

Setting. A quadratic ``L(θ) = ½ θᵀ H θ``, ``H ⪰ 0``, and PyTorch's update rules (``b`` the momentum buffer):
heavy ball ``b' = β b + Hθ, θ' = θ − η b'``; Nesterov ``b' = β b + Hθ, θ' = θ − η (Hθ + β b')``; Adam with
its preconditioner ``P`` frozen ``m' = β₁ m + (1 − β₁) Hθ, θ' = θ − η P⁻¹ m'``.

Statement. Each is a linear map of ``(θ, b)``; in an eigen-direction of ``H`` (of ``P^{-1/2} H P^{-1/2}`` for
Adam) with ``h = η λ`` its characteristic polynomial is

    heavy ball  z² − (1 + β − h) z + β,          stable iff 0 < h < 2(1 + β),
    Nesterov    z² − (1 + β)(1 − h) z + β(1 − h), stable iff 0 < h < 2(1 + β)/(1 + 2β),
    Adam        heavy ball with h ↦ (1 − β₁) h,   stable iff 0 < λ(P⁻¹H) < (2 + 2β₁)/((1 − β₁) η),

so with momentum 0.9 the GD threshold ``2/η`` becomes ``3.8/η`` (heavy ball), ``3.8/(2.8 η)`` (Nesterov) and
``38/η`` for Adam's preconditioned sharpness (Cohen et al. 2022's frozen-preconditioner analysis).

Checks: sympy derives each polynomial from the update matrix and the Jury conditions give the intervals;
the linearized map is built by running ``torch.optim.SGD`` itself on basis states (heavy ball and Nesterov)
and by hand for frozen Adam, and on 60 random quadratics its spectral radius is below 1 at 0.98 times the
threshold and above 1 at 1.02 times. Last, the library's ``stability_threshold`` and ``linear_stability``
(on a model whose Hessian is known) agree.
"""

from __future__ import annotations

import sympy as sp
import torch

from proofs._common import Steps, check, check_close, check_zero, generator, main
from stability.dynamics.optimizers import OptimizerSetting, linear_stability, stability_threshold


def jury(poly: sp.Expr, z: sp.Symbol) -> list[sp.Expr]:
    """For ``z² + a₁ z + a₀``: all roots in the open unit disc iff ``1 − a₀ > 0``, ``1 + a₀ > 0``,
    ``1 + a₁ + a₀ > 0``, ``1 − a₁ + a₀ > 0`` (each returned as an expression that must be positive)."""
    a1, a0 = sp.Poly(poly, z).all_coeffs()[1:]
    return [1 - a0, 1 + a0, 1 + a1 + a0, 1 - a1 + a0]


def torch_sgd_map(H: torch.Tensor, lr: float, beta: float, nesterov: bool) -> torch.Tensor:
    """The ``(2d, 2d)`` matrix of one ``torch.optim.SGD`` step on ``½θᵀHθ`` acting on ``(θ, b)``."""
    d = H.shape[0]
    cols = []
    for j in range(2 * d):
        e = torch.zeros(2 * d, dtype=torch.float64)
        e[j] = 1
        theta = torch.nn.Parameter(e[:d].clone())
        opt = torch.optim.SGD([theta], lr=lr, momentum=beta, nesterov=nesterov)
        opt.state[theta]["momentum_buffer"] = e[d:].clone()
        theta.grad = H @ theta.detach()
        opt.step()
        cols.append(torch.cat([theta.detach(), opt.state[theta]["momentum_buffer"]]))
    return torch.stack(cols, 1)


def adam_frozen_map(H: torch.Tensor, P: torch.Tensor, lr: float, beta1: float) -> torch.Tensor:
    """The matrix of ``m' = β₁ m + (1 − β₁) Hθ, θ' = θ − η P⁻¹ m'`` on ``(θ, m)``."""
    d = H.shape[0]
    eye = torch.eye(d, dtype=torch.float64)
    m_row = torch.cat([(1 - beta1) * H, beta1 * eye], 1)
    theta_row = torch.cat([eye, torch.zeros(d, d, dtype=torch.float64)], 1) - lr * torch.diag(1 / P) @ m_row
    return torch.cat([theta_row, m_row], 0)


def radius(M: torch.Tensor) -> float:
    return float(torch.linalg.eigvals(M).abs().max())


def verify(verbose: bool = False) -> None:
    step = Steps(verbose)
    z, h, b = sp.symbols("z h beta", real=True)
    theta, buf = sp.symbols("theta b", real=True)
    updates = {
        "heavy-ball": (b * buf + h * theta, None),
        "nesterov": (b * buf + h * theta, "nesterov"),
    }
    thresholds = {"heavy-ball": 2 * (1 + b), "nesterov": 2 * (1 + b) / (1 + 2 * b)}
    for kind, (new_buf, flavour) in updates.items():
        # with η b absorbed into b (and h = ηλ): θ' = θ − b'  or  θ' = θ − (hθ + β b')
        new_theta = theta - (h * theta + b * new_buf if flavour else new_buf)
        A = sp.Matrix([new_theta, new_buf]).jacobian([theta, buf])
        poly = sp.expand((A - z * sp.eye(2)).det())
        want = (z**2 - (1 + b - h) * z + b) if kind == "heavy-ball" else (z**2 - (1 + b) * (1 - h) * z + b * (1 - h))
        check_zero(poly - sp.expand(want), f"{kind}: characteristic polynomial")
        conditions = jury(poly, z)
        edge = sp.solve(sp.Eq(poly.subs(z, -1), 0), h)
        check(len(edge) == 1, f"{kind}: one crossing of z = −1")
        check_zero(edge[0] - thresholds[kind], f"{kind}: the root crosses −1 at h = threshold")
        check_zero(poly.subs(z, 1) - h, f"{kind}: p(1) = h, positive iff h > 0")
        # every condition holds strictly inside (0, threshold) for β in [0, 1): check at a grid of rational points
        for bv in (0, sp.Rational(1, 2), sp.Rational(9, 10)):
            top = thresholds[kind].subs(b, bv)
            for frac in (sp.Rational(1, 100), sp.Rational(1, 2), sp.Rational(99, 100)):
                check(all(c.subs({b: bv, h: frac * top}) > 0 for c in conditions), f"{kind}: Jury inside at β={bv}")
            check(any(c.subs({b: bv, h: sp.Rational(101, 100) * top}) <= 0 for c in conditions), f"{kind}: outside")
    step("sympy: heavy ball z² − (1+β−h)z + β, stable iff 0 < h < 2(1+β); Nesterov z² − (1+β)(1−h)z + β(1−h), "
         "stable iff 0 < h < 2(1+β)/(1+2β) (Jury conditions)")  # fmt: skip
    check_close(float(thresholds["heavy-ball"].subs(b, sp.Rational(9, 10))), 3.8, "β = 0.9: 3.8/η")

    g = generator(5)
    d, count = 5, 0
    for trial in range(60):
        Q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
        lam = torch.rand(d, generator=g, dtype=torch.float64) * 3 + 0.05
        H = Q @ torch.diag(lam) @ Q.T
        beta = float(torch.rand((), generator=g)) * 0.95
        kind = ("heavy-ball", "nesterov", "adam")[trial % 3]
        if kind == "adam":
            P = torch.rand(d, generator=g, dtype=torch.float64) + 0.2
            sharp = float(torch.linalg.eigvalsh(torch.diag(P.rsqrt()) @ H @ torch.diag(P.rsqrt())).max())
        else:
            sharp = float(lam.max())
        eta = stability_threshold(kind, 1.0, momentum=beta) / sharp  # η at which λ_max sits on the threshold
        for below in (True, False):
            lr = eta * (0.98 if below else 1.02)
            M = adam_frozen_map(H, P, lr, beta) if kind == "adam" else torch_sgd_map(H, lr, beta, kind == "nesterov")
            rho = radius(M)
            check((rho < 1) == below, f"trial {trial} ({kind}, β = {beta:.3f}): ρ = {rho:.6f} at {'0.98' if below else '1.02'}×")
            count += 1
    step(f"numeric: {count} linearized maps (torch.optim.SGD run on basis states; frozen Adam by hand) on random "
         "quadratics have ρ < 1 at 0.98× and ρ > 1 at 1.02× the threshold step size")  # fmt: skip

    # the library, on a linear model with MSE whose Hessian XᵀX/n is known
    X = torch.randn(40, 4, generator=g, dtype=torch.float64)
    model = torch.nn.Linear(4, 1, bias=False, dtype=torch.float64)
    y = model(X).detach()
    H = X.T @ X / 40
    lam_max = float(torch.linalg.eigvalsh(H).max())
    for kind, beta in (("heavy-ball", 0.9), ("nesterov", 0.9), ("gd", 0.0)):
        thr = stability_threshold(kind, 0.1, momentum=beta)
        verdict = linear_stability(model, X, y, setting=OptimizerSetting(kind, 0.1, beta), loss="mse", tol=1e-10)
        check_close(verdict.sharpness, lam_max, f"library {kind}: λ_max(H)", rtol=1e-8)
        check_close(verdict.threshold, thr, f"library {kind}: threshold")
    P = {"weight": torch.rand(1, 4, generator=g, dtype=torch.float64) + 0.5}
    pre = P["weight"].flatten().rsqrt()
    want = float(torch.linalg.eigvalsh(pre[:, None] * H * pre[None, :]).max())
    adam = linear_stability(model, X, y, setting=OptimizerSetting("adam", 0.1, 0.9, preconditioner=P), loss="mse", tol=1e-10)
    check_close(adam.sharpness, want, "library adam: λ_max(P⁻¹H)", rtol=1e-8)
    check_close(adam.threshold, 38 / 0.1, "library adam: 38/η at β₁ = 0.9")
    step("the library's linear_stability measures λ_max(H) and λ_max(P⁻¹H) and compares them with these thresholds")


if __name__ == "__main__":
    main(verify)
