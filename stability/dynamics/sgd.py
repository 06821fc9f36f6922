"""When a minimum is stable for SGD: three statements, each with its logical status.

Near a minimum ``θ*`` shared by every per-sample loss (interpolation), SGD with a batch ``S`` of ``B``
samples is the random linear map ``θ ↦ A_S θ``, ``A_S = I − η H_S``, ``H_S = (1/B) Σ_{i∈S} H_i``. Its second
moment evolves by the map ``T(M) = E[A_S M A_S]``, and the minimum is mean-square stable iff ``ρ(T) ≤ 1``
(Mulayoff & Michaeli 2023). With ``H = (1/n) Σ H_i``, ``Σ = (1/n) Σ (H_i − H)²`` and the noise factor
``c = (n − B)/(B (n − 1))`` (batches of ``B`` distinct samples; ``1/B`` with replacement):

- **necessary**: ``λ_max(H) ≤ 2/η`` (and no negative curvature). ``E θ`` follows ``I − η H``, and mean-square
  stability implies stability of the mean; formally ``T ⪰ (I − ηH) · (I − ηH)`` on the PSD cone, so
  ``ρ(T) ≥ ρ(I − ηH)²``.
- **sufficient**: ``λ_max((I − ηH)² + η² c Σ) ≤ 1`` — Wu, Ma & E's (2018) d-dimensional condition. The matrix
  is ``E[A_S²] = T(I)``; ``T(I) ⪯ I`` and positivity of ``T`` give ``T^k(M) ⪯ ‖M‖ I``, so ``ρ(T) ≤ 1``.
- **exact**: ``ρ(T) ≤ 1``, with ``T = (I − ηH)⊗(I − ηH) + η² c (1/n) Σ_i (H_i − H)⊗(H_i − H)``, a symmetric
  ``D² × D²`` matrix, formed for models with at most ``max_exact_dim`` parameters.

The scalar form ``(1 − ηa)² + η² s² c ≤ 1`` with ``a = λ_max(H)``, ``s² = λ_max(Σ)`` is the exact condition in
one dimension only (:func:`stability.dynamics.verdicts.sgd_criterion`); in ``d`` dimensions it is neither
necessary nor sufficient (``proofs/sgd_scalar_false_alarm.py``, ``proofs/sgd_scalar_missed.py``).

All three need a common minimizer of the per-sample losses; with cross-entropy (no finite minimizer) they
describe the linearization at the current iterate, and the per-sample Hessians are those of the loss there.
Flat directions (``H_i v = 0`` for all ``i``) have multiplier exactly 1; the statements are about the others,
so "≤ 1" is tested within the solver's tolerance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import hessian, vmap

from stability.checks import check_positive, check_positive_int
from stability.curvature.lanczos import EigenResult, top_eigenvalues
from stability.curvature.measures import seed_generator
from stability.curvature.operators import LambdaOperator
from stability.curvature.products import CurvatureOperator
from stability.dynamics.wu_ma_e import NonUniformityOperator
from stability.errors import BadInputError
from stability.functional import FunctionalModel, Params, flatten
from stability.losses import mean_loss

KINDS = ("necessary", "sufficient", "exact")


def noise_factor(n: int, batch_size: int, *, replacement: bool = False) -> float:
    """``c`` with ``Cov(H_S) = c · (1/n) Σ (H_i − H)⊗(H_i − H)``: ``(n − B)/(B (n − 1))`` for ``B`` distinct
    samples, ``1/B`` for ``B`` independent draws; 0 for full batch without replacement."""
    if not (isinstance(n, int) and isinstance(batch_size, int) and 1 <= batch_size <= n):
        raise BadInputError(f"need integers 1 <= batch_size <= n, got batch_size={batch_size!r}, n={n!r}")
    if replacement:
        return 1.0 / batch_size
    return 0.0 if batch_size == n else (n - batch_size) / (batch_size * (n - 1))


@dataclass(frozen=True)
class SGDStatement:
    """One stability statement: ``value ≤ bound`` and what follows from it.

    Attributes:
        kind: ``necessary`` (violated ⇒ unstable), ``sufficient`` (holds ⇒ stable) or ``exact`` (iff).
        quantity: the formula of ``value``.
        holds: ``value ≤ bound`` within ``tol`` (``None``: not computed; ``note`` says why).
        implies: the verdict this statement gives: ``stable``, ``unstable`` or ``undecided``.
        eigen: the Lanczos solve behind ``value`` (``None`` for closed forms and dense computations).
    """

    kind: str
    quantity: str
    value: float | None
    bound: float
    holds: bool | None
    implies: str
    note: str
    eigen: EigenResult | None = None


def _implies(kind: str, holds: bool | None) -> str:
    if holds is None:
        return "undecided"
    if kind == "exact":
        return "stable" if holds else "unstable"
    if kind == "necessary":
        return "undecided" if holds else "unstable"
    return "stable" if holds else "undecided"


def statement(kind: str, quantity: str, value: float | None, bound: float, *, slack: float = 0.0,
              note: str = "", eigen: EigenResult | None = None) -> SGDStatement:  # fmt: skip
    """An :class:`SGDStatement` for ``value ≤ bound + slack`` (``value=None``: not computed)."""
    holds = None if value is None or not math.isfinite(value) else bool(value <= bound + slack)
    return SGDStatement(kind, quantity, value, bound, holds, _implies(kind, holds), note, eigen)


@dataclass(frozen=True)
class SGDStability:
    """The three statements for SGD at step ``lr`` with batches of ``batch_size`` out of ``n``.

    ``stable`` combines them: the exact one when computed; otherwise ``True`` if the sufficient one holds,
    ``False`` if the necessary one fails, ``None`` (undecided) in between. ``n_evaluated`` is the number of
    samples ``H`` and ``Σ`` average over (all ``n`` unless a subset was asked for).
    """

    lr: float
    batch_size: int
    n: int
    replacement: bool
    noise_factor: float
    n_evaluated: int
    necessary: SGDStatement
    sufficient: SGDStatement
    exact: SGDStatement
    stable: bool | None
    note: str


def combine(lr: float, batch_size: int, n: int, replacement: bool, n_evaluated: int,
            necessary: SGDStatement, sufficient: SGDStatement, exact: SGDStatement) -> SGDStability:  # fmt: skip
    """Join three statements into one :class:`SGDStability` with its verdict and a sentence."""
    if exact.holds is not None:
        stable, why = exact.holds, f"exact: ρ(T) = {exact.value:.4g}"
    elif sufficient.holds:
        stable, why = True, f"sufficient condition holds: {sufficient.value:.4g} ≤ 1"
    elif necessary.holds is False:
        stable, why = False, f"necessary condition fails: η λ_max = {necessary.value:.4g} > 2"
    else:
        stable, why = None, "undecided: the necessary condition holds and the sufficient one does not"
    verdict = {True: "stable", False: "unstable", None: "not determined"}[stable]
    c = noise_factor(n, batch_size, replacement=replacement)
    return SGDStability(lr, batch_size, n, replacement, c, n_evaluated, necessary, sufficient, exact, stable,
                        f"{verdict} ({why}).")  # fmt: skip


def second_moment_matrix(hessians: Tensor, lr: float, batch_size: int, *, replacement: bool = False) -> Tensor:
    """``T = (I − ηH)⊗(I − ηH) + η² c (1/n) Σ_i (H_i − H)⊗(H_i − H)`` as a symmetric ``(D², D²)`` matrix.

    ``hessians: (n, D, D)`` per-sample Hessians. Cost: ``n D⁴`` multiply-adds, memory ``D⁴``.
    """
    n, d = hessians.shape[0], hessians.shape[1]
    c = noise_factor(n, batch_size, replacement=replacement)
    H = hessians.mean(0)
    A = torch.eye(d, dtype=hessians.dtype, device=hessians.device) - lr * H
    delta = hessians - H
    T = torch.einsum("ij,kl->ikjl", A, A) + lr**2 * c * torch.einsum("nij,nkl->ikjl", delta, delta) / n
    return T.reshape(d * d, d * d)


def dense_statements(hessians: Tensor, lr: float, batch_size: int, *, replacement: bool = False,
                     tol: float = 1e-10) -> SGDStability:  # fmt: skip
    """The three statements from dense per-sample Hessians ``(n, D, D)`` (exact eigen-solves)."""
    lr = check_positive("lr", lr)
    n = hessians.shape[0]
    c = noise_factor(n, batch_size, replacement=replacement)
    H = hessians.mean(0)
    eig = torch.linalg.eigvalsh(H)
    sigma = ((hessians - H) @ (hessians - H)).mean(0)
    A = torch.eye(H.shape[0], dtype=H.dtype, device=H.device) - lr * H
    wme = float(torch.linalg.eigvalsh(A @ A + lr**2 * c * sigma).max())
    rho = float(torch.linalg.eigvalsh(second_moment_matrix(hessians, lr, batch_size, replacement=replacement)).abs().max())
    nec = necessary_statement(float(eig.max()), float(eig.min()), lr, slack=tol)
    suf = statement("sufficient", "λ_max((I − ηH)² + η² c Σ)", wme, 1.0, slack=tol)
    ex = statement("exact", "ρ(E[(I − ηH_S) ⊗ (I − ηH_S)])", rho, 1.0, slack=tol)
    return combine(lr, batch_size, n, replacement, n, nec, suf, ex)


def necessary_statement(lam_max: float, lam_min: float | None, lr: float, *, slack: float = 0.0,
                        eigen: EigenResult | None = None) -> SGDStatement:  # fmt: skip
    """``η λ_max(H) ≤ 2`` and ``λ_min(H) ≥ −slack``, i.e. ``ρ(I − ηH) ≤ 1``."""
    if lam_min is not None and lam_min < -slack:
        return SGDStatement("necessary", "η λ_max(H) ≤ 2 and λ_min(H) ≥ 0", lr * lam_max, 2.0, False, "unstable",
                            f"negative curvature λ_min = {lam_min:.3g}: the mean iterate leaves", eigen)  # fmt: skip
    return statement("necessary", "η λ_max(H)", lr * lam_max, 2.0, slack=2 * slack, eigen=eigen)


def per_sample_hessians(op: CurvatureOperator, chunk_size: int | None = None) -> Tensor:
    """Dense per-sample loss Hessians ``(n, D, D)`` on ``op``'s evaluation set (``op.curvature`` must be
    ``hessian``). Memory ``n D²``; cost ``D`` HVPs per sample."""
    fm, params, loss = op.model, op.params, op.loss
    flat = flatten(params)

    def single(xi: Tensor, yi: Tensor) -> Tensor:
        return hessian(lambda v: mean_loss(loss, fm(op.unflatten(v), xi[None]), yi[None]))(flat)

    return torch.cat([vmap(single, chunk_size=chunk_size)(xb, yb) for xb, yb in op.batches()])


def wme_operator(sigma: NonUniformityOperator, lr: float, c: float) -> LambdaOperator:
    """``v ↦ (I − ηH)² v + η² c Σ v`` from one pass of per-sample products (``2n`` per-sample HVPs and one
    batched one per application)."""

    def matvec(v: Tensor) -> Tensor:
        hv, hhv, mean_sq = sigma.moments(v)
        return v - 2 * lr * hv + lr**2 * hhv + lr**2 * c * (mean_sq - hhv)

    return LambdaOperator(matvec, sigma.dim, sigma.dtype, sigma.device)


def sgd_stability(
    model: nn.Module | FunctionalModel, x: Tensor, y: Tensor, *, lr: float, batch_size: int, replacement: bool = False,
    loss: str = "cross-entropy", params: Params | None = None, chunk_size: int | None = None,
    subset: int | None = None, seed: int = 0, tol: float = 1e-3, max_iter: int = 100, max_exact_dim: int = 48,
    per_sample_chunk: int | None = None, top: EigenResult | None = None, bottom: EigenResult | None = None,
    **options: Any,
) -> SGDStability:
    """The three statements (module docstring) for SGD with batches of ``batch_size`` out of ``n = len(x)``.

    ``H``, ``Σ`` and the per-sample Hessians are taken on the same samples: all of them, or a seeded
    ``subset`` when asked (``n`` stays ``len(x)`` for the noise factor). ``top``/``bottom``: ``λ_max``/``λ_min``
    of ``H`` on those samples when already measured. Cost: Lanczos on ``H`` (twice, unless given) and on
    Wu–Ma–E's matrix (``2·n_evaluated`` per-sample HVPs per step); the exact radius, when ``D ≤
    max_exact_dim``, costs ``D`` HVPs per sample and an eigen-solve of a ``D² × D²`` matrix.
    """
    lr = check_positive("lr", lr)
    max_exact_dim = check_positive_int("max_exact_dim", max_exact_dim)
    n = x.shape[0]
    c = noise_factor(n, batch_size, replacement=replacement)
    op = CurvatureOperator(model, x, y, loss=loss, params=params, chunk_size=chunk_size, subset=subset, seed=seed,
                           **options)  # fmt: skip
    solve = dict(tol=tol, max_iter=max_iter)
    top = top or top_eigenvalues(op, 1, which="LA", generator=seed_generator(seed), **solve)
    bottom = bottom or top_eigenvalues(op, 1, which="SA", generator=seed_generator(seed + 1), **solve)
    lam, low = float(top.eigenvalues[0]), float(bottom.eigenvalues[0])
    slack = max(float(bottom.residuals[0]), bottom.tol * abs(lam))
    nec = necessary_statement(lam, low, lr, slack=slack, eigen=top)
    wme = top_eigenvalues(wme_operator(NonUniformityOperator(op, per_sample_chunk=per_sample_chunk), lr, c), 1,
                          which="LA", generator=seed_generator(seed + 2), **solve)  # fmt: skip
    wme_value = float(wme.eigenvalues[0])
    suf = statement("sufficient", "λ_max((I − ηH)² + η² c Σ)", wme_value, 1.0,
                    slack=max(float(wme.residuals[0]), tol), eigen=wme,
                    note="flat directions contribute exactly 1; ≤ 1 is tested within the solve's accuracy")  # fmt: skip
    if op.dim <= max_exact_dim:
        hess = per_sample_hessians(op, per_sample_chunk)
        T = second_moment_matrix(hess, lr, batch_size, replacement=replacement)
        rho = float(torch.linalg.eigvalsh(T.double()).abs().max())
        ex = statement("exact", "ρ(E[(I − ηH_S) ⊗ (I − ηH_S)])", rho, 1.0, slack=tol * 1e-3,
                       note=f"dense D² × D² second-moment matrix, D = {op.dim}")  # fmt: skip
    else:
        ex = statement("exact", "ρ(E[(I − ηH_S) ⊗ (I − ηH_S)])", None, 1.0,
                       note=f"not computed: {op.dim} parameters > max_exact_dim = {max_exact_dim} (memory D⁴)")  # fmt: skip
    return combine(lr, batch_size, n, replacement, op.n, nec, suf, ex)

