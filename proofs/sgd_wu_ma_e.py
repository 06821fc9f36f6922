"""The SGD stability condition of Wu, Ma & E (2018), exactly, in one dimension.

Setting. ``n`` per-sample quadratics sharing their minimum at 0 (an interpolating minimum):
``ℓ_i(θ) = ½ h_i θ²``, ``L = (1/n) Σ_i ℓ_i``. SGD draws a batch ``S`` of ``B`` distinct indices uniformly
(without replacement) and steps ``θ' = θ − η (1/B) Σ_{i∈S} h_i θ = (1 − η ĥ_S) θ``.

Statement. With sharpness ``a = (1/n) Σ h_i`` and non-uniformity ``s² = (1/n) Σ h_i² − a²``,

    E[θ'² | θ] = [ (1 − ηa)² + η² s² (n − B) / (B (n − 1)) ] θ²,

so the second moment does not grow (the minimum is stable for SGD in the mean-square sense) iff

    (1 − ηa)² + η² s² (n − B) / (B (n − 1)) ≤ 1.

Derivation: ``E[(1 − ηĥ)²] = (1 − η E ĥ)² + η² Var ĥ``, ``E ĥ = a`` and, for a mean of ``B`` draws without
replacement, ``Var ĥ = (s²/B)(n − B)/(n − 1)`` (finite-population correction). ``B = n`` recovers GD's
``(1 − ηa)² ≤ 1 ⇔ ηa ≤ 2``; for ``B < n`` non-uniform curvatures (``s > 0``) tighten the condition, so a
minimum can be GD-stable but SGD-unstable. In ``d`` dimensions the scalar form with ``a = λ_max(H)`` and
``s² = λ_max((1/n) Σ H_i² − H²)`` is neither necessary nor sufficient (``proofs/sgd_scalar_false_alarm.py``,
``proofs/sgd_scalar_missed.py``); only the one-dimensional identity is proved here.

Checks: the identity symbolically for ``n = 4`` and every ``B`` by enumerating all batches; numerically
for ``n = 7, B = 3`` by exact enumeration with random ``h``; and by simulation (seeded, within 4 standard
errors), including a minimum that GD keeps but SGD leaves. Last, the library's ``sgd_criterion`` evaluates this identity and reaches the same verdicts.
"""

from __future__ import annotations

import itertools
import math

import sympy as sp
import torch

from proofs._common import Steps, check, check_close, check_zero, generator, main
from stability.dynamics.verdicts import gd_criterion, sgd_criterion


def factor(h: torch.Tensor, eta: float, B: int) -> torch.Tensor:
    """``(1 − ηa)² + η² s² (n − B)/(B (n − 1))`` for curvatures ``h: (n,)``."""
    n = h.numel()
    a, s2 = h.mean(), h.pow(2).mean() - h.mean() ** 2
    return (1 - eta * a) ** 2 + eta**2 * s2 * (n - B) / (B * (n - 1))


def verify(verbose: bool = False) -> None:
    step = Steps(verbose)
    n = 4
    h = sp.symbols(f"h1:{n + 1}", real=True)
    eta = sp.Symbol("eta", positive=True)
    a = sp.Add(*h) / n
    s2 = sp.Add(*(hi**2 for hi in h)) / n - a**2
    for B in range(1, n + 1):
        batches = list(itertools.combinations(h, B))
        second_moment = sp.Add(*((1 - eta * sp.Add(*S) / B) ** 2 for S in batches)) / len(batches)
        claimed = (1 - eta * a) ** 2 + eta**2 * s2 * sp.Rational(n - B, B * (n - 1))
        check_zero(sp.expand(second_moment - claimed), f"n = {n}, B = {B}: E(1 − ηĥ)² over all batches")
    step(f"symbolic, n = {n}, B = 1..{n}: E[(1 − ηĥ_S)²] = (1 − ηa)² + η²s²(n − B)/(B(n − 1)) over all C(n, B) batches")

    g = generator(0)
    n, B = 7, 3
    hn = torch.rand(n, generator=g, dtype=torch.float64) * 3
    idx = torch.tensor(list(itertools.combinations(range(n), B)))
    for e in (0.1, 0.5, 0.9):
        exact = ((1 - e * hn[idx].mean(1)) ** 2).mean()
        check_close(exact, factor(hn, e, B), f"n = {n}, B = {B}, η = {e}: enumeration vs formula")
    step(f"numeric, n = {n}, B = {B}: exact enumeration of all {len(idx)} batches matches the formula")

    # a minimum GD keeps (ηa < 2) but SGD leaves: one large curvature among small ones
    hs = torch.tensor([0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 6.0], dtype=torch.float64)
    n, B, e = hs.numel(), 1, 1.2
    check(float(e * hs.mean()) < 2, "GD-stable: ηa < 2")
    q = float(factor(hs, e, B))
    check(q > 1, f"SGD factor {q:.3f} should exceed 1")
    runs, steps = 200_000, 3
    theta = torch.ones(runs, dtype=torch.float64)
    for _ in range(steps):
        # B = 1: one uniformly drawn sample per step (without replacement is the same as with for B = 1)
        pick = torch.randint(0, n, (runs,), generator=g)
        theta = (1 - e * hs[pick]) * theta
    m2 = theta.pow(2)
    mean, se = float(m2.mean()), float(m2.std() / math.sqrt(runs))
    check(abs(mean - q**steps) < 4 * se, f"simulated E θ_3² = {mean:.3f} ± {se:.3f} vs q³ = {q**steps:.3f}")
    check(abs(1 - e * float(hs.mean())) < 1, "yet GD's multiplier |1 − ηa| < 1")
    step(f"simulation, B = 1: ηa = {e * float(hs.mean()):.2f} < 2 (GD-stable), yet E θ_t² grows as {q:.2f}^t")

    # ηa = 1 makes GD's part vanish, so the whole second moment is the sampling term, whose finite-population
    # factor (n − B)/(n − 1) = 2/3 separates sampling without replacement from with replacement.
    hs = torch.tensor([0.2, 0.5, 3.0, 4.3], dtype=torch.float64)
    n, B, e = 4, 2, 0.5
    pairs = torch.tensor(list(itertools.combinations(range(n), B)))
    theta = torch.ones(runs, dtype=torch.float64)
    for _ in range(steps):
        batch = pairs[torch.randint(0, len(pairs), (runs,), generator=g)]
        theta = (1 - e * hs[batch].mean(1)) * theta
    m2 = theta.pow(2)
    mean, se = float(m2.mean()), float(m2.std() / math.sqrt(runs))
    q = float(factor(hs, e, B))
    s2 = float(hs.pow(2).mean() - hs.mean() ** 2)
    q_with = float((1 - e * hs.mean()) ** 2 + e**2 * s2 / B)
    check(abs(mean - q**steps) < 4 * se, f"B = 2 without replacement: {mean:.5f} ± {se:.5f} vs {q**steps:.5f}")
    check(abs(mean - q_with**steps) > 10 * se, "the with-replacement variance s²/B must not fit")
    step(f"simulation, n = 4, B = 2 without replacement: E θ_3² = {mean:.5f} ± {se:.5f}, formula {q**steps:.5f} "
         f"(with replacement would give {q_with**steps:.5f})")

    hs = torch.tensor([0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 6.0], dtype=torch.float64)
    n, B, e = hs.numel(), 1, 1.2
    a, s = float(hs.mean()), float((hs.pow(2).mean() - hs.mean() ** 2).sqrt())
    verdict = sgd_criterion(a, s, e, B, n)
    check_close(verdict.lhs, factor(hs, e, B), "stability.sgd_criterion: its left side is the second-moment factor")
    check(not verdict.stable and gd_criterion(a, e).stable, "the library: GD-stable, SGD-unstable")
    check_close(sgd_criterion(a, s, e, n, n).lhs, (1 - e * a) ** 2, "B = n: the library's criterion is GD's")
    step("the library's sgd_criterion evaluates this one-dimensional identity and reaches the same verdicts")

if __name__ == "__main__":
    main(verify)
