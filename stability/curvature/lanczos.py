"""Matrix-free eigensolvers for a symmetric operator ``A`` that is only available through ``v ↦ A v``.

An *operator* here is any callable mapping a vector ``(D,)`` to ``(D,)`` that also carries ``dim``,
``dtype`` and ``device`` attributes (:class:`stability.curvature.CurvatureOperator`, the non-uniformity
operator of :mod:`stability.dynamics`, or a dense matrix wrapped in :class:`MatrixOperator`). An optional
``matmat(V: (D, k)) -> (D, k)`` method lets estimators apply it to several vectors at once.

- :func:`top_eigenvalues` — Lanczos with full reorthogonalization and thick restarts.
- :func:`power_iteration` — the baseline used by PyHessian and the edge-of-stability code.

Both return an :class:`EigenResult` that carries its own evidence: residual norms ``‖A v − λ v‖``, the
number of operator products spent, and whether the stopping test was met.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from stability.checks import check_choice, check_positive, check_positive_int
from stability.curvature.operators import SymmetricOperator, apply_block, as_operator, random_vectors, seeded
from stability.errors import BadInputError
from stability.serialize import omitted

WHICH = ("LA", "LM", "SA")


@dataclass(frozen=True)
class EigenResult:
    """Eigenpairs of a symmetric operator, with the evidence needed to trust them.

    Attributes:
        eigenvalues: ``(k,)``, from the wanted end first (``LA``: descending; ``SA``: ascending;
            ``LM``: by decreasing magnitude).
        eigenvectors: ``(D, k)`` unit columns.
        residuals: ``(k,)`` residual norms ``‖A v − λ v‖`` (recomputed with ``k`` extra products when the
            solver was asked to check them, otherwise the solver's own estimates).
        iterations: solver steps taken (one operator product each).
        num_hvps: operator products spent in total, residual checks included.
        converged: whether the stopping test ``residual ≤ tol · scale`` was met for all ``k`` pairs.
        tol: the relative tolerance used; ``scale`` is the largest Ritz value magnitude (≈ ``‖A‖₂``).
        which: ``LA``, ``SA`` or ``LM``.
        history: the leading eigenvalue estimate after every step (for convergence plots and benchmarks).

    :func:`stability.serialize.to_json` writes all but ``eigenvectors`` and ``history``.
    """

    eigenvalues: Tensor
    eigenvectors: Tensor = omitted()
    residuals: Tensor
    iterations: int
    num_hvps: int
    converged: bool
    tol: float
    which: str
    history: tuple[float, ...] = omitted(default=())


class _Krylov:
    """An orthonormal basis ``Q`` (rows) and the projection ``T = Q A Qᵀ`` built one product at a time.

    Every new vector is orthogonalized against the whole basis twice (classical Gram-Schmidt, repeated),
    so ``Q`` stays orthonormal to working precision and no spurious copies of converged eigenvalues
    appear. ``T`` is filled from the measured projections rather than assumed tridiagonal, so the same
    code serves plain Lanczos and the arrowhead matrices that thick restarts produce.
    """

    def __init__(self, op: SymmetricOperator, capacity: int, start: Tensor) -> None:
        self.op = op
        self.Q = torch.zeros(capacity + 1, op.dim, dtype=op.dtype, device=op.device)
        self.T = torch.zeros(capacity + 1, capacity + 1, dtype=torch.float64)
        self.Q[0] = start / start.norm()
        self.size = 0  # basis vectors whose products are in T
        self.beta = 0.0  # norm of the residual direction that continues the basis

    def step(self) -> Tensor:
        """Apply ``A`` to the newest basis vector; returns the unnormalized continuation ``w``."""
        j = self.size
        w = self.op(self.Q[j])
        Qj = self.Q[: j + 1]
        h = Qj @ w
        w = w - Qj.T @ h
        h2 = Qj @ w
        w = w - Qj.T @ h2
        # One device-to-host transfer per step: the new column of T and the continuation's norm together.
        col = torch.cat([h + h2, w.norm().reshape(1)]).to(device="cpu", dtype=torch.float64)
        self.T[: j + 1, j] = col[:-1]
        self.size = j + 1
        self.beta = float(col[-1])
        return w

    def projected(self) -> Tensor:
        j = self.size
        upper = torch.triu(self.T[:j, :j])
        return upper + torch.triu(upper, 1).T

    def orthogonal_complement(self, v: Tensor) -> Tensor:
        Qj = self.Q[: self.size]
        for _ in range(2):
            v = v - Qj.T @ (Qj @ v)
        return v


def _order(theta: Tensor, which: str) -> Tensor:
    if which == "LA":
        return torch.argsort(theta, descending=True)
    if which == "SA":
        return torch.argsort(theta)
    return torch.argsort(theta.abs(), descending=True)


def _check_common(op: Any, k: int, which: str, tol: float, max_iter: int) -> SymmetricOperator:
    op = as_operator(op)
    check_choice("which", which, WHICH)
    if not (isinstance(k, int) and 1 <= k <= op.dim):
        raise BadInputError(f"k must be an integer in [1, {op.dim}] (the operator's dimension), got {k!r}")
    check_positive("tol", tol)
    check_positive_int("max_iter", max_iter)
    return op


def _start_vector(op: SymmetricOperator, v0: Tensor | None, generator: torch.Generator | None) -> Tensor:
    if v0 is None:
        return random_vectors(op.dim, 1, dtype=op.dtype, device=op.device, generator=generator)[:, 0]
    if v0.shape != (op.dim,):
        raise BadInputError(f"v0 must have shape ({op.dim},), got {tuple(v0.shape)}")
    if not float(v0.norm()) > 0:
        raise BadInputError("v0 must be a non-zero vector")
    return v0.to(dtype=op.dtype, device=op.device)


def top_eigenvalues(
    op: Any,
    k: int = 1,
    *,
    which: str = "LA",
    tol: float = 1e-4,
    max_iter: int = 300,
    basis_size: int | None = None,
    v0: Tensor | None = None,
    generator: torch.Generator | None = None,
    check_residuals: bool = True,
) -> EigenResult:
    """The ``k`` extreme eigenpairs of a symmetric operator by thick-restart Lanczos.

    Builds an orthonormal Krylov basis ``Q`` of ``span{v0, A v0, A² v0, ...}`` (full
    reorthogonalization) and the projection ``T = Q A Qᵀ``; the eigenpairs ``(θ, s)`` of ``T`` give
    Ritz pairs ``(θ, Qᵀ s)`` with residual ``‖A Qᵀ s − θ Qᵀ s‖ = β |s_last|``. It stops when the ``k``
    wanted Ritz pairs satisfy ``β |s_last| ≤ tol · max|θ|``. When the basis holds ``basis_size``
    vectors, it keeps the best ``k + (basis_size − k)/2`` Ritz vectors and the continuation vector
    (thick restart, Wu & Simon 2000), so memory stays ``(basis_size + 1) · D`` numbers.

    "Top" is ``which="LA"``: largest algebraic, i.e. the sharpness ``λ_max``. ``LM`` (largest
    magnitude, what power iteration finds) and ``SA`` (most negative curvature) are also offered.

    Args:
        op: operator (see module docstring) or a dense symmetric ``(D, D)`` tensor.
        k: number of eigenpairs.
        tol: relative residual tolerance; eigenvalue errors are at most the residual (and, for a
            well-separated eigenvalue with gap ``g``, about ``residual² / g``).
        max_iter: budget of Lanczos steps (operator products) before giving up with ``converged=False``.
        basis_size: Krylov basis size before a restart; default ``max(2k + 20, 40)``, capped at ``D``.
        v0: start vector ``(D,)`` (e.g. the previous top eigenvector, to warm-start tracking).
        generator: seeds the random start vector (default: a generator seeded with 0).
        check_residuals: spend ``k`` more products to report true residuals ``‖A v − λ v‖``.

    Cost: ``iterations`` products (+ ``k`` if ``check_residuals``), ``O(iterations · basis · D)`` for
    reorthogonalization, and ``(basis + 1) · D`` memory.
    """
    op = _check_common(op, k, which, tol, max_iter)
    generator = seeded(generator)
    dim = op.dim
    m = min(basis_size or max(2 * k + 20, 40), dim)
    if m < min(k + 2, dim):
        raise BadInputError(f"basis_size ({m}) must be at least k + 2 = {k + 2} (or the dimension {dim})")
    kry = _Krylov(op, m, _start_vector(op, v0, generator))
    breakdown_tol = math.sqrt(dim) * torch.finfo(op.dtype).eps
    history: list[float] = []
    steps, converged = 0, False
    while True:
        w = kry.step()
        steps += 1
        theta, S = torch.linalg.eigh(kry.projected())
        order = _order(theta, which)
        want = order[: min(k, kry.size)]
        scale = max(float(theta.abs().max()), torch.finfo(torch.float64).tiny)
        estimates = kry.beta * S[-1, want].abs()
        history.append(float(theta[order[0]]))
        exhausted = kry.size == dim
        invariant = kry.beta <= breakdown_tol * scale
        if kry.size >= k and (exhausted or bool((estimates <= tol * scale).all())):
            converged = True
            break
        if steps >= max_iter:
            break
        if invariant:
            # The basis spans an invariant subspace; continue from a fresh direction outside it.
            fresh = random_vectors(dim, 1, dtype=op.dtype, device=op.device, generator=generator)[:, 0]
            w, kry.beta = kry.orthogonal_complement(fresh), 0.0
            if float(w.norm()) <= breakdown_tol:
                converged = kry.size >= k
                break
        nxt = w / w.norm()
        if kry.size == m:
            keep = order[: min(m - 1, max(k, k + (m - k) // 2))]
            kept = S[:, keep].to(dtype=op.dtype, device=op.device)
            kry.Q[: len(keep)] = kept.T @ kry.Q[: kry.size]
            kry.T.zero_()
            kry.T[: len(keep), : len(keep)] = torch.diag(theta[keep])
            kry.size = len(keep)
        kry.Q[kry.size] = nxt
    vectors = kry.Q[: kry.size].T @ S[:, want].to(dtype=op.dtype, device=op.device)
    values = theta[want].to(op.dtype)
    residuals = estimates.to(op.dtype)
    num = steps
    if check_residuals:
        residuals = (apply_block(op, vectors) - vectors * values.to(op.device)).norm(dim=0).cpu()
        num += len(want)
    return EigenResult(
        eigenvalues=values, eigenvectors=vectors, residuals=residuals, iterations=steps, num_hvps=num,
        converged=converged, tol=tol, which=which, history=tuple(history),
    )


def power_iteration(
    op: Any,
    *,
    tol: float = 1e-4,
    max_iter: int = 1000,
    v0: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> EigenResult:
    """The largest-magnitude eigenpair by power iteration: ``v ← A v / ‖A v‖``.

    Each step spends one product ``w = A v`` and gets from it the Rayleigh quotient ``λ = vᵀ w`` and the
    residual ``‖w − λ v‖``; it stops when ``‖w − λ v‖ ≤ tol · |λ|``. Convergence is geometric with ratio
    ``|λ₂ / λ₁|``, so it is slow when the top eigenvalues cluster, which Lanczos is not. It finds the
    eigenvalue of largest *magnitude*: away from a minimum that can be a negative one.

    Cost: ``iterations`` products, ``O(D)`` memory.
    """
    op = _check_common(op, 1, "LM", tol, max_iter)
    v = _start_vector(op, v0, seeded(generator))
    v = v / v.norm()
    history: list[float] = []
    lam, res, converged, it = 0.0, float("inf"), False, 0
    vec = v
    for it in range(1, max_iter + 1):
        vec, w = v, op(v)
        lam_t = vec @ w
        lam, res = torch.stack([lam_t, (w - lam_t * vec).norm()]).tolist()  # one host sync per step
        history.append(lam)
        if res <= tol * abs(lam):
            converged = True
            break
        v = w / w.norm()
    return EigenResult(
        eigenvalues=torch.tensor([lam], dtype=op.dtype), eigenvectors=vec[:, None],
        residuals=torch.tensor([res], dtype=op.dtype), iterations=it, num_hvps=it, converged=converged,
        tol=tol, which="LM", history=tuple(history),
    )
