"""GD stability bounds the Hessian trace only as O(nC/η); SGD's noise is what bounds it per sample.

Statement. At an interpolating minimum of the mean-squared loss, ``H = (1/n) Σ_i J_iᵀ J_i`` with ``J_i`` of
size ``C × D``, so ``rank H ≤ nC`` and GD's stability, ``λ_max(H) ≤ 2/η``, gives only

    tr H ≤ rank(H) · λ_max(H) ≤ 2nC/η.

The bound is attained up to the factor ``2 − δ``: for ``f = wᵀx`` (``C = 1``) on ``n ≤ d`` orthogonal inputs
``x_i = s e_i`` with ``s² = n(2 − δ)/η``, ``H = (s²/n) Σ_i e_i e_iᵀ`` has ``n`` equal eigenvalues ``(2 − δ)/η``:
GD-stable for every ``0 < δ < 2``, yet ``tr H = (1/n) Σ_i ‖∇_θ f(x_i)‖² = n(2 − δ)/η`` grows with ``n``. So
GD stability gives no per-sample bound on ``‖∇_θ f(x_i)‖`` (nor, through the first-layer bound, on the
input gradients at the data) that does not grow with ``n``. SGD with ``B = 1`` is not stable at that minimum:
each direction ``e_i`` is contracted by ``1 − ηs²`` with probability ``1/n`` and kept otherwise, so the
second moment grows by ``1 + ((1 − n(2 − δ))² − 1)/n = 1 + (n(2 − δ) − 2)(2 − δ)`` per step, above 1 whenever
``δ < 2 − 2/n`` (every ``δ ≤ 1`` once ``n ≥ 2``) — the noise term is what bounds per-sample curvature.

Checks: sympy for the family (spectrum, trace, the GD verdict and the exact SGD factor); numerically the
rank bound on a random interpolating tanh network (dense Hessian); the library's ``dense_statements`` gives
the GD-necessary condition holding and the exact second-moment radius above 1 for ``B = 1``.
"""

from __future__ import annotations

import sympy as sp
import torch
from torch.func import hessian, vmap

from proofs._common import Steps, check, check_close, check_zero, flatten, generator, main, mlp, mlp_params
from stability.dynamics.sgd import dense_statements


def verify(verbose: bool = False) -> None:
    step = Steps(verbose)
    n, eta, delta = sp.symbols("n eta delta", positive=True)
    s2 = n * (2 - delta) / eta
    lam = s2 / n  # each of the n nonzero eigenvalues of H = (s²/n) Σ e_i e_iᵀ
    check_zero(eta * lam - (2 - delta), "η λ_max = 2 − δ ≤ 2: GD-stable")
    check_zero(n * lam - n * (2 - delta) / eta, "tr H = n (2 − δ)/η")
    factor = 1 + ((1 - eta * s2) ** 2 - 1) / n
    check_zero(sp.expand(factor - 1 - (n * (2 - delta) - 2) * (2 - delta)), "SGD (B = 1) factor per direction")
    check(sp.simplify((factor - 1).subs({n: 2, delta: sp.Rational(1, 2)})) > 0, "unstable at n = 2, δ = 1/2")
    step("orthogonal inputs with s² = n(2 − δ)/η: η λ_max = 2 − δ, tr H = n(2 − δ)/η; SGD's factor "
         "1 + (n(2 − δ) − 2)(2 − δ) > 1 for n ≥ 2, δ < 2 − 2/n")

    gen = generator(11)
    d, k = 4, 7
    params = mlp_params(gen, d, widths=(5,))
    flat, unflatten = flatten(params)
    X = torch.randn(k, d, generator=gen, dtype=torch.float64)

    def out(v: torch.Tensor) -> torch.Tensor:
        return vmap(lambda x: mlp(unflatten(v), x))(X)

    Y = out(flat).detach()
    H = hessian(lambda v: 0.5 * (out(v) - Y).pow(2).mean())(flat)
    ev = torch.linalg.eigvalsh(H)
    rank = int((ev > 1e-10 * ev[-1]).sum())
    check(rank <= k, f"rank H = {rank} ≤ nC = {k}")
    check(float(ev.sum()) <= rank * float(ev[-1]) * (1 + 1e-12), "tr H ≤ rank · λ_max")
    step(f"tanh network, D = {flat.numel()}, n = {k}, C = 1 at interpolation: rank H = {rank} ≤ nC, tr H ≤ rank·λ_max")

    for size in (2, 5, 20):
        lr, dl = 0.1, 0.5
        scale = size * (2 - dl) / lr
        hessians = torch.zeros(size, size, size, dtype=torch.float64)
        for i in range(size):
            hessians[i, i, i] = scale  # ℓ_i = ½ (wᵀx_i − y_i)² with x_i = s e_i: H_i = s² e_i e_iᵀ
        H = hessians.mean(0)
        check_close(torch.trace(H), size * (2 - dl) / lr, f"n = {size}: tr H = n(2 − δ)/η", rtol=1e-12)
        out_ = dense_statements(hessians, lr, 1)
        check(out_.necessary.holds is True, f"n = {size}: GD's η λ_max ≤ 2 holds")
        expected = 1 + (size * (2 - dl) - 2) * (2 - dl)
        check_close(out_.exact.value, expected, f"n = {size}: exact second-moment radius for B = 1", rtol=1e-10)
        check(out_.stable is False, f"n = {size}: SGD with B = 1 is unstable")
    step("library dense_statements: GD-stable, tr H = n(2 − δ)/η grows with n, and SGD (B = 1) is unstable there")


if __name__ == "__main__":
    main(verify)
