"""T1: the scalar two-layer linear net ``f = a b x`` on one point ``(x0, y0)``, ``x0 y0 ≠ 0``.

Statement. With ``L = ½ r²``, ``r = a b x0 − y0`` (the residual) and ``c = y0/x0``:

(a) the fixed set (interpolating minima) is the hyperbola ``a b = c``;
(b) on it ``H = x0² (b, a)(b, a)ᵀ`` and the GD-map Jacobian has eigenvalues ``1`` (along the hyperbola) and
    ``1 − η x0² (a² + b²)``, so a minimum is linearly stable iff ``η x0² (a² + b²) < 2``;
(c) on the hyperbola ``a² + b² ≥ 2|c|`` with equality iff ``|a| = |b|`` (balanced), so the flattest minimum has
    sharpness ``2|x0 y0|`` and a stable minimum exists iff ``η |x0 y0| < 1``;
(d) at interpolation ``‖∂G/∂x0‖² = η² x0² c² (a² + b²)``, also least at the balanced points;
(e) every GD step (anywhere, not only near the minimum) scales the imbalance:
    ``a'² − b'² = (a² − b²)(1 − η² x0² r²)``, with ``r`` the residual before the step.

Checks: everything derived symbolically from ``stability.toy.catalog.two_layer_scalar(x0, y0)`` with symbolic
data and compared with ``stability.toy.facts.TWO_LAYER_SCALAR``; the autodiff twin at random points for (b),
(d) and (e).
"""

from __future__ import annotations

import sympy as sp
import torch
from torch.func import vmap

from proofs._common import Steps, check, check_close, check_zero, generator, main
from stability.toy import catalog, facts
from stability.toy import symbolic as S
from stability.toy.twins import torch_twin


def verify(verbose: bool = False) -> None:
    step = Steps(verbose)
    x0, y0 = sp.symbols("x0 y0", nonzero=True, real=True)
    eta = sp.Symbol("eta", positive=True)
    model = catalog.two_layer_scalar(x0, y0)
    a, b = model.params
    s = model.fixed_set.coords[0]
    c = y0 / x0
    check_zero(S.on_fixed_set(model, S.gradient(model)), "∇L = 0 on (s, c/s)")
    check_zero(sp.expand(S.residuals(model)[0].subs({a: s, b: c / s})), "residual 0 on the hyperbola")
    check(sp.solve(S.residuals(model)[0], b) == [c / a], "the interpolating set is exactly b = c/a")
    step("fixed set: r = 0 ⇔ a b = y0/x0, and ∇L vanishes on it")

    H = S.hessian(model)
    on = {b: c / a}
    gv = sp.Matrix([b, a])
    check_zero((H - x0**2 * gv * gv.T).subs(on), "H = x0² (b, a)(b, a)ᵀ on the hyperbola")
    J = S.gd_jacobian(model, eta).subs(on)
    eig = list(J.eigenvals())
    check(len(eig) == 2 and 1 in eig, f"GD Jacobian eigenvalues {eig}: expected 1 and one more")
    other = [e for e in eig if e != 1][0]
    check_zero(other - (1 - eta * x0**2 * (a**2 + c**2 / a**2)), "the transverse eigenvalue 1 − η x0²(a² + b²)")
    margin = facts.TWO_LAYER_SCALAR["stability_margin"].subs({facts.ETA: eta, facts.X0: x0, facts.A: a, facts.B: c / a})
    check_zero(margin - (2 - eta * x0**2 * (a**2 + c**2 / a**2)), "facts: stability margin")
    mults = facts.TWO_LAYER_SCALAR["gd_multipliers"].subs({facts.ETA: eta, facts.X0: x0, facts.A: a, facts.B: c / a})
    check_zero(mults - sp.Matrix([1, other]), "facts: GD multipliers")
    step("on the hyperbola: H = x0²(b, a)(b, a)ᵀ, Jacobian eigenvalues 1 and 1 − η x0²(a² + b²): "
         "stable iff η x0²(a² + b²) < 2")  # fmt: skip

    crit = sp.solve(sp.diff(a**2 + c**2 / a**2, a), a)
    check(all(sp.simplify(cr**4 - c**2) == 0 for cr in crit), "critical points: a⁴ = c² (|a| = |b|)")
    # with α = |a| and γ = |c|: a² = α², b² = γ²/α², |x0 y0| = x0² γ
    al, ga = sp.symbols("alpha gamma", positive=True)
    check_zero(x0**2 * (al**2 + ga**2 / al**2) - 2 * x0**2 * ga - x0**2 * (al - ga / al) ** 2,
               "x0²(a² + b²) − 2|x0 y0| = x0²(|a| − |b|)²")  # fmt: skip
    data = {facts.X0: x0, facts.Y0: y0}
    check_zero(facts.TWO_LAYER_SCALAR["min_sharpness"].subs(data) - 2 * sp.Abs(x0 * y0), "facts: min sharpness")
    check_zero(facts.TWO_LAYER_SCALAR["max_stable_lr"].subs(data) - 1 / sp.Abs(x0 * y0), "facts: max lr")
    ba, bb = (facts.TWO_LAYER_SCALAR[k].subs({facts.X0: x0, facts.Y0: y0}) for k in ("balanced_a", "balanced_b"))
    check_zero(sp.simplify(ba * bb - c), "facts: the balanced point lies on the hyperbola")
    check_zero(sp.simplify(ba**2 - bb**2), "facts: and is balanced")
    step("x0²(a² + b²) − 2|x0 y0| = x0²(|a| − |b|)² ≥ 0: flattest at the balanced points; "
         "a stable minimum exists iff η|x0 y0| < 1")  # fmt: skip

    gij = S.gd_input_jacobian(model, eta, 0).subs(on)
    check_zero(sp.expand((gij.T * gij)[0] - eta**2 * x0**2 * c**2 * (a**2 + c**2 / a**2)), "‖∂G/∂x0‖²")
    stated = facts.TWO_LAYER_SCALAR["input_jacobian_sq"].subs({facts.ETA: eta, **data, facts.A: a, facts.B: c / a})
    check_zero(sp.expand((gij.T * gij)[0] - stated), "facts: ‖∂G/∂x0‖²")
    step("at interpolation ‖∂G/∂x0‖² = η² x0² c² (a² + b²): the balanced point is also the least input-sensitive")

    a1, b1 = S.gd_map(model, eta)
    r = S.residuals(model)[0]
    check_zero(sp.expand(a1**2 - b1**2 - (a**2 - b**2) * (1 - eta**2 * x0**2 * r**2)), "imbalance law")
    law = facts.TWO_LAYER_SCALAR["imbalance_factor"].subs({facts.ETA: eta, facts.X0: x0, facts.R: r})
    check_zero(sp.expand(a1**2 - b1**2 - (a**2 - b**2) * law), "facts: imbalance factor")
    step("every step: a'² − b'² = (a² − b²)(1 − η² x0² r²) with r = a b x0 − y0 before the step")

    g = generator(7)
    for x0n, y0n in ((1.3, -0.7), (0.4, 2.0)):
        tw = torch_twin(catalog.two_layer_scalar(x0n, y0n))
        th = torch.randn(32, 2, generator=g, dtype=torch.float64) * 1.5
        e = 0.37
        new = vmap(tw.gd_map, in_dims=(0, None))(th, e)
        r_n = th[:, 0] * th[:, 1] * x0n - y0n
        imb = th[:, 0] ** 2 - th[:, 1] ** 2
        law = imb * (1 - e**2 * x0n**2 * r_n**2)
        check_close(new[:, 0] ** 2 - new[:, 1] ** 2, law, "autodiff: imbalance law", atol=1e-12)
        aa = th[:, 0]
        star = torch.stack([aa, (y0n / x0n) / aa], 1)
        eig = torch.linalg.eigvalsh(vmap(tw.gd_jacobian, in_dims=(0, None))(star, e))
        pred = torch.stack([1 - e * x0n**2 * (star ** 2).sum(1), torch.ones_like(aa)], 1).sort(1).values
        check_close(eig, pred, "autodiff: Jacobian eigenvalues on the hyperbola", atol=1e-10)
        jac = vmap(tw.gd_input_jacobian, in_dims=(0, None))(star, e)
        stated_n = e**2 * x0n**2 * (y0n / x0n) ** 2 * (star**2).sum(1)
        check_close(jac.pow(2).sum((1, 2, 3)), stated_n, "autodiff: ‖∂G/∂x0‖²")
    step("autodiff twin at 32 random points, two choices of (x0, y0): imbalance law, eigenvalues, ‖∂G/∂x0‖²")


if __name__ == "__main__":
    main(verify)
