"""Linear stability of gradient descent at a fixed point.

Statement. Let θ* be a fixed point of the GD map ``G(θ) = θ − η∇L(θ)`` with ``η > 0``, and let ``H = ∇²L(θ*)``
be symmetric with eigenpairs ``(λ_k, v_k)``. Then ``∂G/∂θ(θ*) = I − ηH`` has the same eigenvectors and the
eigenvalues ``1 − ηλ_k``, and

(a) ``ρ(I − ηH) < 1  ⇔  0 < ηλ_k < 2 for every k  ⇔  H ≻ 0 and λ_max(H) < 2/η``;
(b) if ``H ⪰ 0`` has a null space (a manifold of minima: its tangent directions), those directions have
    multiplier exactly 1, and on ``range(H)`` (the normal directions)
    ``ρ((I − ηH)|_range(H)) < 1  ⇔  λ_max(H) < 2/η``;
(c) if ``λ_max(H) > 2/η`` then ``1 − ηλ_max < −1``: perturbations along ``v_max`` grow with alternating sign,
    and θ* is linearly unstable. (At ``λ_max = 2/η`` exactly the linearization is inconclusive.)

Checks: sympy solves ``|1 − ηλ| < 1`` over ``η > 0`` for ``λ`` of each sign and compares
``stability.toy.stable_learning_rates``; autodiff compares ``∂G/∂θ`` (reverse mode through the map) with
``I − ηH`` (dense Hessian) and iterates the linear and the nonlinear map on both sides of ``2/λ_max``. Last, the library's ``gd_criterion`` gives the verdicts GD reached.
"""

from __future__ import annotations

import sympy as sp
import torch
from torch.func import grad, hessian, jacrev

from proofs._common import Steps, check, check_close, generator, main
from stability.dynamics.verdicts import gd_criterion
from stability.toy import catalog
from stability.toy.gd import gradient_descent
from stability.toy.symbolic import stable_learning_rates
from stability.toy.twins import torch_twin


def verify(verbose: bool = False) -> None:
    step = Steps(verbose)
    eta = sp.Symbol("eta", positive=True)
    lam_pos, lam_neg = sp.Symbol("lambda", positive=True), sp.Symbol("mu", negative=True)

    stable = sp.solve_univariate_inequality(sp.Abs(1 - eta * lam_pos) < 1, eta, relational=False)
    check(stable == sp.Interval.open(0, 2 / lam_pos), f"λ > 0: expected (0, 2/λ), got {stable}")
    step(f"λ > 0: |1 − ηλ| < 1 ⇔ η ∈ {stable}")
    none = sp.solve_univariate_inequality(sp.Abs(1 - eta * lam_neg) < 1, eta, relational=False)
    check(none == sp.EmptySet, f"λ < 0: expected no stable η, got {none}")
    step("λ < 0: no η > 0 gives |1 − ηλ| < 1 (a saddle or maximum is never stable)")
    check(sp.Abs(1 - eta * 0) == 1, "λ = 0 gives multiplier 1")
    step("λ = 0: multiplier exactly 1 (neutral: directions along a manifold of minima)")

    l1, l2, l3 = (sp.Rational(3), sp.Rational(1, 2), sp.Integer(0))
    check(stable_learning_rates([l1, l2, l3]) == sp.Interval.open(0, sp.Rational(2, 3)), "library, transverse")
    check(stable_learning_rates([l1, l2, l3], transverse=False) == sp.EmptySet, "library, full spectrum")
    check(stable_learning_rates([l1, -l2]) == sp.EmptySet, "library, a negative eigenvalue")
    step("stable_learning_rates: (0, 2/λ_max) on range(H); empty with a zero (full) or negative eigenvalue")

    g = generator(0)
    P, rank = 6, 4
    M = torch.randn(P, rank, generator=g, dtype=torch.float64)
    H = M @ M.T  # PSD with a 2-dimensional null space
    lam, V = torch.linalg.eigh(H)
    lmax = lam[-1]

    def quad(th: torch.Tensor) -> torch.Tensor:
        return 0.5 * th @ H @ th

    for e in (0.3, 1.7):
        eta_n = e / lmax
        J = jacrev(lambda th: th - eta_n * grad(quad)(th))(torch.zeros(P, dtype=torch.float64))
        check_close(J, torch.eye(P, dtype=torch.float64) - eta_n * hessian(quad)(torch.zeros(P, dtype=torch.float64)),
                    "∂G/∂θ = I − ηH (autodiff through the map vs dense Hessian)")  # fmt: skip
        check_close(torch.linalg.eigvalsh(J).sort().values, (1 - eta_n * lam).sort().values, "eigenvalues 1 − ηλ_k")
    step("autodiff: ∂G/∂θ = I − ηH with eigenvalues 1 − ηλ_k")

    normal, null = V[:, lam > 1e-10], V[:, lam <= 1e-10]
    start = torch.randn(P, generator=g, dtype=torch.float64)
    e = start.clone()
    for _ in range(3000):
        e = e - 0.98 * 2 / lmax * H @ e
    check(float((normal.T @ e).norm() / (normal.T @ start).norm()) < 1e-8, "η = 0.98·2/λ_max: normal part decays")
    check_close(null.T @ e, null.T @ start, "η = 0.98·2/λ_max: null-space part untouched", atol=1e-12)
    e = start.clone()
    for _ in range(200):
        e = e - 1.02 * 2 / lmax * H @ e
    growth = float((V[:, -1] @ e).abs() / (V[:, -1] @ start).abs())
    check_close(growth, (1.02 * 2 - 1) ** 200, "η = 1.02·2/λ_max: top component grows by |1 − ηλ_max|^t", rtol=1e-9)
    step("linear map: the normal part decays for η < 2/λ_max, the top direction grows for η > 2/λ_max; null part fixed")

    # the nonlinear map of T1 (f = a b x) near a fixed point of sharpness s = x0²(a² + b²)
    x0, y0, a = 1.0, 1.0, 1.4
    tw = torch_twin(catalog.two_layer_scalar(x0, y0))
    star = torch.tensor([a, y0 / (x0 * a)], dtype=torch.float64)
    s = float(torch.linalg.eigvalsh(tw.hessian(star))[-1])
    check_close(s, x0**2 * (a**2 + (y0 / (x0 * a)) ** 2), "T1 sharpness on the fixed set")
    kick = torch.tensor([[1e-4, -1e-4]], dtype=torch.float64)
    lrs = torch.tensor([0.97, 1.03], dtype=torch.float64) * 2 / s
    runs = gradient_descent(tw.loss, (star + kick).repeat(2, 1), lrs, 600)
    check(float(runs.losses[-1, 0]) < 1e-24 and float((runs.final[0] - star).norm()) < 1e-3,
          "T1: η slightly below 2/s converges to a minimum next to θ*")  # fmt: skip
    check(float((runs.final[1] - star).norm()) > 1e-2, "T1: η slightly above 2/s leaves θ*")
    step(f"nonlinear GD (T1) near a minimum of sharpness {s:.4f}: converges at 0.97·2/s, leaves at 1.03·2/s")

    verdicts = [gd_criterion(s, float(lr)) for lr in lrs]
    check([v.stable for v in verdicts] == [True, False], "stability.gd_criterion: stable at 0.97·2/s, not at 1.03·2/s")
    check_close([v.threshold for v in verdicts], [2 / float(lr) for lr in lrs], "the library's threshold is 2/η")
    step("the library's gd_criterion gives the verdicts GD reached")


if __name__ == "__main__":
    main(verify)
