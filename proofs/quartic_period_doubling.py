"""The quartic ``L(θ) = (θ² − 1)²/4``: gradient descent as a discrete dynamical system.

Statement. The GD map is ``G(θ) = θ − η θ (θ² − 1)``, with fixed points ``0, ±1`` and ``G′(θ) = 1 + η − 3ηθ²``.

(a) ``G′(±1) = 1 − 2η``: the minima are stable for ``0 < η < 1`` and lose stability at ``η = 1`` through
    ``G′ = −1`` (a flip, or period-doubling, bifurcation; ``L″(±1) = 2`` and ``2/η = 2`` there).
(b) ``G(G(θ)) − θ = η θ (θ² − 1) (ηθ² − η − 2) (η²θ⁴ − η(η + 1)θ² + 1)``; the last factor gives the 2-cycle
    born at ``η = 1``: ``θ² = (η + 1 ∓ √((η − 1)(η + 3)))/(2η)``, real iff ``η ≥ 1`` and equal to 1 at ``η = 1``.
(c) Its multiplier is ``G′(p)G′(q) = 9 − 2(1 + η)²``: ``+1`` at ``η = 1`` (its birth), ``−1`` at ``η = √5 − 1``
    (the next doubling, to period 4).
(d) The interval ``[−√((η+2)/η), √((η+2)/η)]`` (bounded by the symmetric 2-cycle ``G(p) = −p``) is invariant iff
    ``4(1 + η)³ ≤ 27(η + 2)``, i.e. ``(η − 2)(2η + 5)² ≤ 0``, i.e. ``η ≤ 2``.
(e) At ``η = 2``, ``G(√2 sin φ) = √2 sin 3φ``: GD is conjugate to the tripling map, chaotic with Lyapunov
    exponent ``ln 3``.

Checks: sympy for (a)–(e) and against ``stability.toy.facts.QUARTIC``; numerically, GD (the autodiff twin)
settles on the predicted 2-cycle at ``η = 1.1``, has period 2 just below ``√5 − 1`` and period 4 just above,
and its orbit average of ``log|G′|`` at ``η = 2`` is ``ln 3``.
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
    model = catalog.quartic()
    (th,) = model.params
    eta = facts.ETA
    G = S.gd_map(model, eta)[0]
    check_zero(G - facts.QUARTIC["gd_map"].subs(facts.THETA, th), "G(θ) = θ − ηθ(θ² − 1)")
    dG = sp.diff(G, th)
    check_zero(dG.subs(th, 1) - (1 - 2 * eta), "G′(1) = 1 − 2η")
    check(sp.solve(sp.Eq(dG.subs(th, 1), -1), eta) == [facts.QUARTIC["loss_of_stability_lr"]], "flip at η = 1")
    check_zero(dG.subs(th, 1) - facts.QUARTIC["fixed_point_multiplier"], "facts: G′(1)")
    check_zero(dG.subs(th, -1) - facts.QUARTIC["fixed_point_multiplier"], "G′(−1) = G′(1)")
    step("(a) G′(±1) = 1 − 2η: stable for η < 1, multiplier −1 (period doubling) at η = 1")

    G2 = sp.expand(G.subs(th, G) - th)
    quartic_factor = eta**2 * th**4 - eta * (eta + 1) * th**2 + 1
    check_zero(G2 - eta * th * (th**2 - 1) * (eta * th**2 - eta - 2) * quartic_factor, "factorization of G∘G − id")
    roots = sp.solve(quartic_factor.subs(th**2, sp.Symbol("s")), sp.Symbol("s"))
    cycle_sq = facts.QUARTIC["two_cycle_sq"]
    check(all(any(is_zero(r - c) for r in roots) for c in cycle_sq), f"2-cycle θ² = {roots}")
    check(all(is_zero(c.subs(eta, 1) - 1) for c in cycle_sq), "born at θ = 1 when η = 1")
    step("(b) G∘G − id factors; the 2-cycle near ±1 has θ² = (η + 1 ∓ √((η − 1)(η + 3)))/(2η), real iff η ≥ 1")

    p, q = (sp.sqrt(c) for c in cycle_sq)
    eta_v = sp.Rational(11, 10)
    # G(p)² = q² for every η: with s = p², G(p)² = s(1 + η − ηs)², q² = 1/(η² s) (the roots' product is 1/η²),
    # and η² s² (1 + η − ηs)² − 1 vanishes modulo the quadratic η²s² − η(η + 1)s + 1
    s_ = sp.Symbol("s")
    quadratic = eta**2 * s_**2 - eta * (eta + 1) * s_ + 1
    rem = sp.rem(sp.expand(eta**2 * s_**2 * (1 + eta - eta * s_) ** 2 - 1), quadratic, s_)
    check_zero(rem, "G maps one point of the 2-cycle to the other")
    mult = sp.expand(dG.subs(th, p) * dG.subs(th, q))
    check_zero(mult - facts.QUARTIC["two_cycle_multiplier"], "multiplier 9 − 2(1 + η)²")
    check(sp.solve(sp.Eq(facts.QUARTIC["two_cycle_multiplier"], -1), eta) == [sp.sqrt(5) - 1], "period 4 at √5 − 1")
    check_zero(facts.QUARTIC["period_four_lr"] - (sp.sqrt(5) - 1), "facts: period-four lr")
    step("(c) the 2-cycle's multiplier is 9 − 2(1 + η)²: +1 at η = 1, −1 at η = √5 − 1 ≈ 1.2361 (period 4)")

    theta_c = sp.sqrt((1 + eta) / (3 * eta))  # G′(θ_c) = 0: the largest value of G on [0, ∞)
    check_zero(dG.subs(th, theta_c), "critical point of G")
    p_sym = sp.sqrt((eta + 2) / eta)
    check_zero(sp.simplify(G.subs(th, p_sym) + p_sym), "G(p) = −p: the symmetric 2-cycle bounds the interval")
    cond = sp.expand((G.subs(th, theta_c) ** 2 - p_sym**2) * 27 * eta)  # ≤ 0 ⇔ max G ≤ p
    check_zero(sp.factor(cond) - sp.factor(4 * (1 + eta) ** 3 - 27 * (eta + 2)), "max G ≤ p ⇔ 4(1+η)³ ≤ 27(η+2)")
    check_zero(4 * (1 + eta) ** 3 - 27 * (eta + 2) - (eta - 2) * (2 * eta + 5) ** 2, "= (η − 2)(2η + 5)²")
    check(sp.solve(sp.Eq((eta - 2) * (2 * eta + 5) ** 2, 0), eta) == [facts.QUARTIC["bounded_until_lr"]],
          "the only positive root is η = 2")  # fmt: skip
    step("(d) [−p, p], p² = (η + 2)/η, is invariant iff (η − 2)(2η + 5)² ≤ 0, i.e. η ≤ 2")

    phi = sp.Symbol("phi", real=True)
    G_at_2 = G.subs(eta, 2)
    check_zero(sp.expand_trig(G_at_2.subs(th, sp.sqrt(2) * sp.sin(phi)) - sp.sqrt(2) * sp.sin(3 * phi)), "conjugacy")
    step("(e) at η = 2, G(√2 sin φ) = √2 sin 3φ: conjugate to φ ↦ 3φ, Lyapunov exponent ln 3")

    tw = torch_twin(model)
    lrs = torch.tensor([1.1, 1.23, 1.245], dtype=torch.float64)
    g = generator(10)
    chaos = torch.rand(32, 1, generator=g, dtype=torch.float64) * 2.6 - 1.3
    starts = torch.cat([torch.full((3, 1), 0.5, dtype=torch.float64), chaos])
    run = gradient_descent(tw.loss, starts, torch.cat([lrs, torch.full((32,), 2.0, dtype=torch.float64)]), 3000)
    x = run.thetas[:, :, 0]
    pred = torch.tensor([float(c.subs(eta, eta_v)) for c in cycle_sq], dtype=torch.float64)
    check_close(torch.sort(x[-2:, 0] ** 2).values, pred, "GD at η = 1.1 sits on the predicted 2-cycle")
    check(abs(float(x[-1, 1] - x[-3, 1])) < 1e-9 < abs(float(x[-1, 1] - x[-2, 1])), "η = 1.23: period 2")
    check(abs(float(x[-1, 2] - x[-5, 2])) < 1e-9 < abs(float(x[-1, 2] - x[-3, 2])), "η = 1.245: period 4")
    ok = ~run.diverged[3:]
    per_run = (3 - 6 * x[100:, 3:][:, ok] ** 2).abs().log().mean(0)
    lyap = float(facts.QUARTIC["lyapunov_at_2"])
    measured = float(per_run.mean())
    check(abs(measured - lyap) < 0.01, f"Lyapunov exponent {measured:.4f} vs ln 3 = {lyap:.4f}")
    step(f"GD: the derived 2-cycle at η = 1.1, period 2 at 1.23, 4 at 1.245, Lyapunov {measured:.4f} ≈ ln 3 at η = 2")


def is_zero(expr: sp.Expr) -> bool:
    return sp.simplify(sp.radsimp(expr)) == 0


if __name__ == "__main__":
    main(verify)
