"""T4: one tanh unit ``f = a tanh(w x + b)`` on the two points ``(−1, −1)`` and ``(1, 1)``.

Statement. With the loss ``L = (1/2) Σ_i ½ (f(x_i) − y_i)²`` (the mean over the two points of half the squared
error — the normalization under which the formula below holds; summing instead doubles every eigenvalue):

(a) the interpolating minima with ``w ≠ 0`` form the branch ``(a, w, b) = (coth w, w, 0)`` (interpolation forces
    ``b = 0``);
(b) on it the Hessian has eigenvalues ``0``, ``(1 − u)²/u`` and the sharpness ``λ(w) = 2u + 1/u − 2``, ``u = tanh² w``;
(c) ``λ`` is least at ``u = 1/√2``, i.e. ``w = artanh(2^{−1/4}) ≈ 1.2242``, where ``λ = 2√2 − 2``; so no minimum is
    linearly stable for ``η > 2/(2√2 − 2) = 1 + √2``;
(d) along the branch ``f′(±1) = 2w / sinh 2w`` falls with ``|w|`` while ``f′(0) = w coth w`` rises: flatter minima
    are less input-sensitive *at the data* but not between the data points.

Checks: sympy on ``stability.toy.catalog.tanh_two_point()`` (the branch, the Hessian in ``t = tanh w``, its
eigenvalues, the minimization, the normalization) against ``stability.toy.facts.TANH_TWO_POINT``; autodiff
Hessians at random branch points; GD started next to the flattest minimum at ``η = 2.3`` and ``η = 2.5``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import sympy as sp
import torch
from torch.func import vmap

from proofs._common import Steps, check, check_close, check_zero, main
from stability.toy import catalog, facts
from stability.toy import symbolic as S
from stability.toy.gd import gradient_descent
from stability.toy.twins import torch_twin


def verify(verbose: bool = False) -> None:
    step = Steps(verbose)
    model = catalog.tanh_two_point()
    a, w, b = model.params
    t = sp.Symbol("t", positive=True)  # t = tanh w on the branch w > 0 (w < 0 is its mirror image)

    def branch(expr: sp.Expr | sp.Matrix) -> sp.Expr | sp.Matrix:
        # on the branch, in t = tanh w: tanh, cosh, coth of artanh(t) are algebraic, so simplify is cheap
        return sp.simplify(S.on_fixed_set(model, expr).subs(w, sp.atanh(t)))

    check(all(branch(r) == 0 for r in S.residuals(model)), "the branch interpolates")
    check_zero(branch(S.gradient(model)), "∇L = 0 on the branch")
    # a tanh(w + b) = 1 and a tanh(b − w) = −1 give tanh(w + b) + tanh(b − w) = 0, and that sum is
    # sinh 2b / (cosh(w + b) cosh(b − w)), zero only at b = 0
    check_zero(sp.tanh(w + b) + sp.tanh(b - w) - sp.sinh(2 * b) / (sp.cosh(w + b) * sp.cosh(b - w)), "tanh sum")
    step("(a) the branch (coth w, w, 0) interpolates, ∇L = 0 there, and interpolation forces b = 0")

    H = branch(S.hessian(model))
    GN = branch(S.gauss_newton(model))
    check_zero(H - GN, "H equals the Gauss-Newton matrix on the branch")
    u = sp.Symbol("u", positive=True)
    eig = sorted((sp.simplify(e.subs(t, sp.sqrt(u))) for e in H.eigenvals()), key=lambda e: float(e.subs(u, 0.5)))
    check_zero(eig[0], "one eigenvalue is 0")
    check_zero(eig[1] - (1 - u) ** 2 / u, "the middle eigenvalue (1 − u)²/u")
    lam = 2 * u + 1 / u - 2
    check_zero(eig[2] - lam, "the sharpness 2u + 1/u − 2")
    check_zero(facts.TANH_TWO_POINT["sharpness"].subs(facts.W, sp.atanh(sp.sqrt(u))) - lam, "facts: sharpness")
    other = facts.TANH_TWO_POINT["other_eigenvalue"].subs(facts.W, sp.atanh(sp.sqrt(u)))
    check_zero(other - eig[1], "facts: other eigenvalue")
    summed = dataclasses.replace(model, weights=(1, 1))
    H_sum = sp.simplify(S.on_fixed_set(summed, S.hessian(summed)).subs(w, sp.atanh(t)))
    check_zero(H_sum - 2 * H, "a summed loss doubles the Hessian")
    step("(b) on the branch H = Gauss-Newton, eigenvalues 0, (1 − u)²/u, 2u + 1/u − 2 with u = tanh² w "
         "(mean loss; a sum doubles them)")  # fmt: skip

    crit = sp.solve(sp.diff(lam, u), u)
    check(crit == [1 / sp.sqrt(2)], f"stationary point u = 1/√2, got {crit}")
    check(sp.diff(lam, u, 2).subs(u, crit[0]) > 0, "a minimum")
    lam_min = sp.nsimplify(sp.simplify(lam.subs(u, crit[0])))
    check_zero(lam_min - (2 * sp.sqrt(2) - 2), "λ_min = 2√2 − 2")
    check_zero(sp.radsimp(2 / lam_min) - (1 + sp.sqrt(2)), "2/λ_min = 1 + √2")
    check_zero(facts.TANH_TWO_POINT["min_sharpness"] - lam_min, "facts: min sharpness")
    check_zero(facts.TANH_TWO_POINT["max_stable_lr"] - (1 + sp.sqrt(2)), "facts: max stable lr")
    check_zero(sp.tanh(facts.TANH_TWO_POINT["argmin_w"]) ** 2 - crit[0], "facts: argmin w")
    w_min = float(facts.TANH_TWO_POINT["argmin_w"])
    step(f"(c) λ is least at u = 1/√2 (w = artanh 2^(-1/4) ≈ {w_min:.4f}): λ = 2√2 − 2, unstable for η > 1 + √2")

    slope = S.on_fixed_set(model, S.input_gradient(model))[0]
    check_zero(slope.subs(model.inputs[0], 1) - 2 * w / sp.sinh(2 * w), "f′(1) = 2w / sinh 2w")
    check_zero(slope.subs(model.inputs[0], -1) - 2 * w / sp.sinh(2 * w), "f′(−1) = 2w / sinh 2w")
    check_zero(slope.subs(model.inputs[0], 0) - w * sp.coth(w), "f′(0) = w coth w")
    check_zero(slope.subs(model.inputs[0], 1) - facts.TANH_TWO_POINT["slope_at_data"].subs(facts.W, w), "facts: f′(±1)")
    check_zero(slope.subs(model.inputs[0], 0) - facts.TANH_TWO_POINT["slope_at_zero"].subs(facts.W, w), "facts: f′(0)")
    ws = np.linspace(0.05, 6, 400)
    check(bool(np.all(np.diff(2 * ws / np.sinh(2 * ws)) < 0)), "f′(±1) falls with w")
    check(bool(np.all(np.diff(ws / np.tanh(ws)) > 0)), "f′(0) rises with w")
    step("(d) f′(±1) = 2w / sinh 2w falls and f′(0) = w coth w rises along the branch")

    tw = torch_twin(model)
    wn = torch.linspace(-3, 3, 41, dtype=torch.float64)
    wn = wn[wn.abs() > 0.1]
    branch = torch.stack([1 / torch.tanh(wn), wn, torch.zeros_like(wn)], 1)
    eigs = torch.linalg.eigvalsh(vmap(tw.hessian)(branch))
    un = torch.tanh(wn) ** 2
    check_close(eigs[:, -1], 2 * un + 1 / un - 2, "autodiff: sharpness on the branch", rtol=1e-10)
    check_close(eigs[:, 0], torch.zeros_like(wn), "autodiff: zero eigenvalue", atol=1e-10)
    step(f"autodiff: Hessian eigenvalues at {len(wn)} branch points match")

    w_star = float(facts.TANH_TWO_POINT["argmin_w"])
    start = torch.tensor([[1 / np.tanh(w_star + 0.05), w_star + 0.05, 0.01]], dtype=torch.float64).repeat(2, 1)
    runs = gradient_descent(tw.loss, start, torch.tensor([2.3, 2.5], dtype=torch.float64), 800)
    check(float(runs.losses[-1, 0]) < 1e-20, "η = 2.3 < 1 + √2: GD settles on a minimum")
    check(float(runs.losses[-200:, 1].min()) > 1e-6, "η = 2.5 > 1 + √2: GD never settles")
    step("GD from next to the flattest minimum: converges at η = 2.3, keeps moving at η = 2.5")


if __name__ == "__main__":
    main(verify)
