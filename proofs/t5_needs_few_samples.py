"""T5's mechanism needs few samples in many dimensions (n ≪ d).

Statement. Gradient splitting on linear features ``f = θᵀφ``, ``θ ∈ R^d``, trains on ``(Φ1, y1)`` and ascends on
``(Φ2, y2)`` (``n`` rows each): ``J(θ) = ½‖Φ1θ − y1‖² − ½‖Φ2θ − y2‖²``. T5's picture — a point that fits both
sets (the solution that generalizes) turned into a saddle whose escape rate grows with the angle between
trained and anti-trained inputs — needs two things:

(a) a point fitting both sets. For generic features and labels it exists iff ``2n ≤ d``: the stacked system
    ``[Φ1; Φ2] θ = [y1; y2]`` has ``2n`` equations of rank ``min(2n, d)``. With ``2n > d`` the critical point
    ``(Φ1ᵀΦ1 − Φ2ᵀΦ2) θ = Φ1ᵀy1 − Φ2ᵀy2`` fits neither set, and there is no generalizing saddle to escape.
(b) nearly orthogonal trained and anti-trained inputs. For independent isotropic inputs in ``R^d``,
    ``E cos² α = 1/d`` exactly (``u_1²`` averages to ``1/d`` on the unit sphere), so ``sin α ≈ 1`` only when
    ``d`` is large; and ``n > d`` unit vectors cannot all be nearly orthogonal: the mean of ``cos²`` over
    ordered pairs is at least ``(n − d)/(d (n − 1))`` (Welch's bound, from ``‖G‖_F² ≥ n²/d`` for their Gram
    matrix ``G`` of rank ``≤ d``).

On 8x8 digits (``d = 64``, ``n = 500`` trained samples) neither holds for linear features of the input, so
there T5 is not the mechanism *(our reading of Badger's claims 2 and 6)*.

Checks: sympy for ``E u_1² = 1/d`` (the sphere's symmetry) and the Welch bound's algebra; numerically the
rank statement (least-squares residual zero for ``2n ≤ d``, positive for ``2n > d``, at random features),
the critical point's residuals for ``2n > d``, the Monte Carlo mean of ``cos²`` within four standard
errors of ``1/d``, and the Welch bound on random unit vectors.
"""

from __future__ import annotations

import sympy as sp
import torch

from proofs._common import Steps, check, check_zero, generator, main


def verify(verbose: bool = False) -> None:
    step = Steps(verbose)
    d = sp.Symbol("d", positive=True, integer=True)
    u1 = sp.Symbol("E_u1sq", positive=True)
    # Σ_k u_k² = 1 on the sphere and every coordinate has the same law, so d · E u_1² = 1.
    check_zero(sp.solve(sp.Eq(d * u1, 1), u1)[0] - 1 / d, "E u_1² = 1/d")
    n = sp.Symbol("n", positive=True)
    # Gram G of n unit vectors: tr G = n, rank ≤ d, so ‖G‖_F² ≥ (tr G)²/rank ≥ n²/d; off-diagonal part ‖G‖_F² − n.
    mean_off = (n**2 / d - n) / (n * (n - 1))
    check_zero(sp.simplify(mean_off - (n - d) / (d * (n - 1))), "Welch: mean off-diagonal cos² ≥ (n − d)/(d(n − 1))")
    step("sympy: E cos² α = 1/d for independent isotropic inputs; Welch's bound (n − d)/(d(n − 1)) for n > d")

    gen = generator(7)
    dim = 12
    for m in (3, 6, 7, 10):
        P1 = torch.randn(m, dim, generator=gen, dtype=torch.float64)
        P2 = torch.randn(m, dim, generator=gen, dtype=torch.float64)
        y1 = torch.randn(m, generator=gen, dtype=torch.float64)
        y2 = torch.randn(m, generator=gen, dtype=torch.float64)
        A, b = torch.cat([P1, P2]), torch.cat([y1, y2])
        theta = torch.linalg.lstsq(A, b[:, None], driver="gelsd").solution[:, 0]
        misfit = float((A @ theta - b).norm() / b.norm())
        if 2 * m <= dim:
            check(misfit < 1e-12, f"n = {m}, d = {dim}: a point fits both sets")
        else:
            check(misfit > 1e-3, f"n = {m}, d = {dim}: no point fits both sets (misfit {misfit:.3g})")
            crit = torch.linalg.solve(P1.T @ P1 - P2.T @ P2, P1.T @ y1 - P2.T @ y2)
            check(float((P1 @ crit - y1).norm()) > 1e-3 and float((P2 @ crit - y2).norm()) > 1e-3,
                  f"n = {m}: the critical point fits neither set")  # fmt: skip
    step(f"d = {dim}: a fit-both point exists for 2n ≤ d (n = 3, 6) and not for 2n > d (n = 7, 10)")

    for dim in (8, 64, 512):
        u = torch.randn(20000, dim, generator=gen, dtype=torch.float64)
        v = torch.randn(20000, dim, generator=gen, dtype=torch.float64)
        cos2 = ((u * v).sum(1) ** 2) / (u.pow(2).sum(1) * v.pow(2).sum(1))
        se = float(cos2.std() / cos2.numel() ** 0.5)
        check(abs(float(cos2.mean()) - 1 / dim) < 4 * se, f"d = {dim}: mean cos² = {float(cos2.mean()):.4g} vs 1/d")
    units = torch.nn.functional.normalize(torch.randn(500, 64, generator=gen, dtype=torch.float64), dim=1)
    G = units @ units.T
    off = float(((G**2).sum() - 500) / (500 * 499))
    check(off >= (500 - 64) / (64 * 499) * (1 - 1e-12), "Welch's bound for n = 500 unit vectors in R^64")
    step(f"Monte Carlo: mean cos² = 1/d within 4 s.e. (d = 8, 64, 512); 500 unit vectors in R^64 have mean cos² "
         f"{off:.4f} ≥ {(500 - 64) / (64 * 499):.4f}")


if __name__ == "__main__":
    main(verify)
