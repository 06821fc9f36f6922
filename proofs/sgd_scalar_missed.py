"""The scalar SGD formula in two dimensions calls an unstable minimum stable.

Setting. ``n = 10`` per-sample quadratics sharing the minimum 0: nine copies of ``diag(1, 0)`` and one
``diag(1, 3)``; SGD with ``η = 1``, ``B = 1`` (``c = 1``).

Statement. ``H = diag(1, 0.3)``, so ``a = λ_max(H) = 1``, and ``Σ = diag(0, 0.81)``, so ``s² = 0.81``: the
scalar form gives ``(1 − 1)² + 0.81 = 0.81 ≤ 1`` ("stable"). In the second coordinate, however,
``E(1 − ηh)² = 0.9 · 1 + 0.1 · 4 = 1.3``, and the exact mean-square spectral radius is ``1.3 > 1``: SGD
leaves the minimum. Wu, Ma & E's matrix condition gives ``λ_max((I − ηH)² + η²cΣ) = 0.49 + 0.81 = 1.3 > 1``,
so the sufficient condition does not certify it — correctly — while ``η λ_max = 1 ≤ 2`` (necessary) holds,
as a necessary condition may.

Checks: sympy computes each number exactly; the library's ``dense_statements`` and scalar ``sgd_criterion``
reproduce them; seeded simulation shows ``E θ₂²`` growing as ``1.3^t``, within four standard errors.
"""

from __future__ import annotations

import sympy as sp
import torch

from proofs._common import Steps, check, check_close, check_zero, main
from proofs.sgd_scalar_false_alarm import exact_radius, scalar_and_matrix, simulate
from stability.dynamics.sgd import dense_statements
from stability.dynamics.verdicts import sgd_criterion

SAMPLES = [(sp.Integer(1), sp.Integer(0))] * 9 + [(sp.Integer(1), sp.Integer(3))]


def verify(verbose: bool = False) -> None:
    step = Steps(verbose)
    eta = sp.Integer(1)
    a, s2, scalar, wme = scalar_and_matrix(SAMPLES, eta)
    rho = exact_radius(SAMPLES, eta)
    check_zero(a - 1, "a = λ_max(H) = 1")
    check_zero(s2 - sp.Rational(81, 100), "s² = 0.81")
    check_zero(scalar - sp.Rational(81, 100), "scalar form 0.81")
    check_zero(rho - sp.Rational(13, 10), "exact radius 1.3")
    check_zero(wme - sp.Rational(13, 10), "Wu–Ma–E matrix condition 1.3")
    check(scalar <= 1 and rho > 1 and wme > 1 and eta * a <= 2, "scalar says stable; exact says unstable")
    step(f"exact: scalar form {float(scalar):.2f} ≤ 1, exact ρ = {float(rho):.2f} > 1, WME matrix {float(wme):.2f} "
         "(not certified), η λ_max = 1 ≤ 2 (necessary holds)")  # fmt: skip

    hs = torch.tensor([[float(v) for v in h] for h in SAMPLES], dtype=torch.float64)
    lib = dense_statements(torch.diag_embed(hs), 1.0, 1)
    check_close(lib.exact.value, 1.3, "library exact radius")
    check_close(lib.sufficient.value, 1.3, "library sufficient (WME matrix)")
    check(lib.stable is False and lib.necessary.holds and not lib.sufficient.holds, "library: unstable (exact)")
    scalar_lib = sgd_criterion(float(a), float(s2) ** 0.5, 1.0, 1, 10)
    check_close(scalar_lib.lhs, 0.81, "library 1-D identity: 0.81")
    check(scalar_lib.stable, "the 1-D identity calls it stable")
    step("library: dense_statements gives unstable (exact 1.3); the 1-D sgd_criterion gives 0.81, stable")

    steps = 6
    g_mean, g_se = simulate(hs[:, 1:], 1.0, steps, 400_000, seed=2)
    check(abs(g_mean - 1.3**steps) < 4 * g_se, f"simulated E θ₂² = {g_mean:.3f} ± {g_se:.3f} vs 1.3^{steps}")
    step(f"simulation: E θ₂² after {steps} steps = {g_mean:.3f} ± {g_se:.3f}, 1.3^{steps} = {1.3**steps:.3f}")


if __name__ == "__main__":
    main(verify)
