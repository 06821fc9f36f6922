"""The scalar SGD formula in two dimensions calls a stable minimum unstable.

Setting. ``n = 2`` per-sample quadratics sharing the minimum 0 with commuting PSD Hessians
``H₁ = diag(1.99, 0.5)``, ``H₂ = diag(1.99, 1.5)``; SGD with ``η = 1`` and ``B = 1``, so ``c = (n − B)/(B(n − 1)) = 1``.

Statement. The scalar form ``(1 − ηa)² + η² s² c`` with ``a = λ_max(H) = 1.99`` and
``s² = λ_max(Σ) = 0.25`` gives ``0.9801 + 0.25 = 1.2301 > 1`` ("unstable"), yet the exact mean-square
spectral radius of ``M ↦ E[(I − ηH_ξ) M (I − ηH_ξ)]`` is ``0.9801 ≤ 1``: stable. The two numbers of the scalar
form belong to different coordinates — ``a`` to the first, ``s`` to the second — and no direction has both.
Wu, Ma & E's matrix condition ``λ_max((I − ηH)² + η²cΣ) = max(0.9801, 0 + 0.25) = 0.9801 ≤ 1`` (sufficient)
and ``η λ_max = 1.99 ≤ 2`` (necessary) both agree with the exact verdict.

Checks: sympy computes each number exactly (the second-moment map enumerated over the two batches); the
library's ``dense_statements`` and scalar ``sgd_criterion`` reproduce them; seeded simulation of 200,000
SGD runs of 40 steps shows ``E‖θ‖²`` shrinking at that rate.
"""

from __future__ import annotations

import sympy as sp
import torch

from proofs._common import Steps, check, check_close, check_zero, generator, main
from stability.dynamics.sgd import dense_statements
from stability.dynamics.verdicts import sgd_criterion

H1 = (sp.Rational(199, 100), sp.Rational(1, 2))
H2 = (sp.Rational(199, 100), sp.Rational(3, 2))


def exact_radius(hs: list[tuple[sp.Rational, ...]], eta: sp.Rational) -> sp.Expr:
    """``ρ(E[A ⊗ A])`` for diagonal ``H_i`` and ``B = 1``, by enumerating the samples."""
    d = len(hs[0])
    T = sp.zeros(d * d, d * d)
    for h in hs:
        A = sp.diag(*[1 - eta * v for v in h])
        T += sp.kronecker_product(A, A) / len(hs)
    return max(abs(v) for v in T.eigenvals())


def scalar_and_matrix(hs: list[tuple[sp.Rational, ...]], eta: sp.Rational) -> tuple[sp.Expr, sp.Expr, sp.Expr, sp.Expr]:
    """``a``, ``s²``, the scalar form and Wu–Ma–E's matrix eigenvalue for diagonal ``H_i``, ``B = 1``, ``c = 1``."""
    n, d = len(hs), len(hs[0])
    mean = [sum(h[k] for h in hs) / n for k in range(d)]
    var = [sum(h[k] ** 2 for h in hs) / n - mean[k] ** 2 for k in range(d)]
    a, s2 = max(mean), max(var)
    return a, s2, (1 - eta * a) ** 2 + eta**2 * s2, max((1 - eta * m) ** 2 + eta**2 * v for m, v in zip(mean, var))


def simulate(hs: torch.Tensor, eta: float, steps: int, runs: int, seed: int) -> tuple[float, float]:
    """Mean and standard error of ``‖θ_steps‖²`` over seeded SGD runs (``B = 1``) from ``θ₀ = (1, …, 1)``."""
    g = generator(seed)
    theta = torch.ones(runs, hs.shape[1], dtype=torch.float64)
    for _ in range(steps):
        pick = torch.randint(0, hs.shape[0], (runs,), generator=g)
        theta = (1 - eta * hs[pick]) * theta
    sq = theta.pow(2).sum(1)
    return float(sq.mean()), float(sq.std() / runs**0.5)


def verify(verbose: bool = False) -> None:
    step = Steps(verbose)
    eta = sp.Integer(1)
    a, s2, scalar, wme = scalar_and_matrix([H1, H2], eta)
    rho = exact_radius([H1, H2], eta)
    check_zero(a - sp.Rational(199, 100), "a = λ_max(H)")
    check_zero(s2 - sp.Rational(1, 4), "s² = λ_max(Σ)")
    check_zero(scalar - sp.Rational(12301, 10000), "scalar form 1.2301")
    check_zero(rho - sp.Rational(9801, 10000), "exact radius 0.9801")
    check_zero(wme - sp.Rational(9801, 10000), "Wu–Ma–E matrix condition 0.9801")
    check(scalar > 1 and rho <= 1 and wme <= 1 and eta * a <= 2, "scalar says unstable; exact, sufficient, necessary say stable")
    step(f"exact: scalar form {float(scalar):.4f} > 1, exact ρ = {float(rho):.4f}, WME matrix {float(wme):.4f}, η λ_max = 1.99")

    hs = torch.tensor([[float(v) for v in H1], [float(v) for v in H2]], dtype=torch.float64)
    lib = dense_statements(torch.diag_embed(hs), 1.0, 1)
    check_close(lib.exact.value, float(rho), "library exact radius")
    check_close(lib.sufficient.value, float(wme), "library sufficient (WME matrix)")
    check(lib.stable is True and lib.necessary.holds and lib.sufficient.holds, "library: stable by all three")
    scalar_lib = sgd_criterion(float(a), float(s2) ** 0.5, 1.0, 1, 2)
    check_close(scalar_lib.lhs, float(scalar), "library 1-D identity: 1.2301")
    check(not scalar_lib.stable, "the 1-D identity calls it unstable")
    step("library: dense_statements gives stable (exact 0.9801); the 1-D sgd_criterion gives 1.2301, unstable")

    mean, se = simulate(hs, 1.0, 40, 200_000, seed=1)
    want = 0.9801**40 + 0.25**40  # each coordinate's second moment shrinks by its own factor
    check(abs(mean - want) <= 4 * se + 1e-12 and mean < 1, f"simulated E‖θ_40‖² = {mean:.4g} ± {se:.2g} vs {want:.4g}")
    step(f"simulation: E‖θ_40‖² = {mean:.4g} (from 2) = 0.9801^40 + 0.25^40 = {want:.4g}: it shrinks")


if __name__ == "__main__":
    main(verify)
