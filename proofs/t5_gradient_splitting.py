"""T5: gradient splitting on linear features turns the fit-both point into a saddle.

Statement. For a linear model ``f = θᵀφ`` trained on ``(φ1, y1)`` while ascending on a held-out ``(φ2, y2)``,
``J(θ) = ½ (θᵀφ1 − y1)² − ½ (θᵀφ2 − y2)²`` has the constant Hessian ``φ1φ1ᵀ − φ2φ2ᵀ``. For unit features at
angle α its nonzero eigenvalues are exactly ``± sin α`` (trace 0, and ``tr M² = 2 − 2 cos² α``); the rest of
the spectrum (directions orthogonal to both features) is 0. For ``sin α ≠ 0`` the only critical point fits
both points, ``θ*ᵀφ1 = y1`` and ``θ*ᵀφ2 = y2``, and it is a saddle: GD ``θ ← θ − η∇J`` moves the error by the
exact linear map ``I − ηH``, so along the negative-curvature eigenvector it grows by ``1 + η sin α`` per step.
The more dissimilar the trained and the anti-trained inputs (α → 90°, as for independent noise inputs in
high dimension), the faster gradient splitting escapes the solution that generalizes.

Checks: sympy on ``stability.toy.catalog.gradient_splitting(α)`` with symbolic α (Hessian, characteristic
polynomial, critical point, exact one-step error map); autodiff on random unit features in ``R^5`` and a GD
run's growth factor.
"""

from __future__ import annotations

import math

import sympy as sp
import torch

from proofs._common import Steps, check, check_close, check_zero, generator, main
from stability.toy import catalog, facts
from stability.toy import symbolic as S
from stability.toy.gd import gradient_descent
from stability.toy.twins import torch_twin


def verify(verbose: bool = False) -> None:
    step = Steps(verbose)
    al = sp.Symbol("alpha", positive=True)
    eta = sp.Symbol("eta", positive=True)
    y1, y2 = sp.symbols("y1 y2", real=True)
    model = catalog.gradient_splitting(al, y1, y2)
    phi1, phi2 = (sp.Matrix(x) for x, _ in model.points)
    H = S.hessian(model)
    check_zero(H - (phi1 * phi1.T - phi2 * phi2.T), "H = φ1φ1ᵀ − φ2φ2ᵀ")
    lam = sp.Symbol("lambda")
    check_zero(sp.expand(sp.simplify(H.charpoly(lam).as_expr() - (lam**2 - sp.sin(al) ** 2))), "charpoly λ² − sin²α")
    stated = facts.GRADIENT_SPLITTING["eigenvalues"].subs(facts.ALPHA, al)
    check_zero(stated - sp.Matrix([sp.sin(al), -sp.sin(al)]), "facts: eigenvalues")
    step("symbolic: H = φ1φ1ᵀ − φ2φ2ᵀ with characteristic polynomial λ² − sin²α: eigenvalues ±sin α")

    crit = sp.solve(list(S.gradient(model)), list(model.params), dict=True)
    check(len(crit) == 1, "one critical point")
    star = sp.Matrix([crit[0][p] for p in model.params])
    check_zero(star - sp.Matrix(model.fixed_set.point), "it is the declared fit-both point")
    check_zero(sp.Matrix([r.subs(dict(zip(model.params, star))) for r in S.residuals(model)]), "it fits both points")
    step("symbolic: the only critical point fits the trained and the held-out point (it is a saddle: ±sin α)")

    e = sp.Matrix(sp.symbols("e1 e2", real=True))
    moved = S.gd_map(model, eta).subs(dict(zip(model.params, star + e)), simultaneous=True)
    check_zero(sp.simplify(moved - star - (sp.eye(2) - eta * H) * e), "error map I − ηH")
    step("symbolic: one GD step maps the error e to (I − ηH) e exactly; along the escape direction ×(1 + η sin α)")

    g = generator(9)
    d = 5
    for _ in range(8):
        p1, p2 = torch.randn(2, d, generator=g, dtype=torch.float64)
        p1, p2 = p1 / p1.norm(), p2 / p2.norm()
        angle = math.acos(float(p1 @ p2))
        model_n = features_model(p1, p2)
        eig = torch.linalg.eigvalsh(torch_twin(model_n).hessian(torch.zeros(d, dtype=torch.float64)))
        expected = torch.tensor([-math.sin(angle), *([0.0] * (d - 2)), math.sin(angle)], dtype=torch.float64)
        check_close(eig, expected, "autodiff: spectrum {−sin α, 0, ..., 0, sin α}", atol=1e-12)
    step(f"autodiff on 8 random pairs of unit features in R^{d}: spectrum ±sin α and zeros")

    eta_n, deg = 0.2, 40
    model_n = catalog.gradient_splitting(math.radians(deg), 1.0, 0.5)
    tw = torch_twin(model_n)
    star_n = torch.tensor([float(v) for v in model_n.fixed_set.point], dtype=torch.float64)
    evals, evecs = torch.linalg.eigh(tw.hessian(star_n))
    run = gradient_descent(tw.loss, (star_n + 1e-6 * evecs[:, 0])[None], eta_n, 50)
    growth = (run.thetas[-1, 0] - star_n).norm() / (run.thetas[0, 0] - star_n).norm()
    rad = math.radians(deg)
    per_step = float(facts.GRADIENT_SPLITTING["escape_multiplier"].subs({facts.ETA: eta_n, facts.ALPHA: rad}))
    check_close(per_step, 1 + eta_n * math.sin(math.radians(deg)), "facts: escape multiplier")
    check_close(growth, per_step**50, "GD growth along the escape direction", rtol=1e-8)
    step(f"GD from the saddle along the escape direction (α = {deg}°, η = {eta_n}): grows by (1 + η sin α)^t")


def features_model(p1: torch.Tensor, p2: torch.Tensor) -> S.ToyModel:
    """T5's loss on arbitrary features ``φ1, φ2 ∈ R^d`` (labels 0), declared through the general toy model."""
    d = p1.numel()
    th = sp.symbols(f"theta1:{d + 1}", real=True)
    x = sp.symbols(f"x1:{d + 1}", real=True)
    return S.ToyModel(
        name="gradient-splitting",
        params=th,
        inputs=x,
        output=sum(a * b for a, b in zip(th, x)),
        points=S.as_points([(p1.tolist(), 0), (p2.tolist(), 0)]),
        weights=(sp.Integer(1), sp.Integer(-1)),
        torch_output=lambda t, xv: t @ xv,
    )


if __name__ == "__main__":
    main(verify)
