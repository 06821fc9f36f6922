"""Stochastic estimates of spectral sums of a symmetric operator seen only through products ``v ↦ A v``.

- :func:`hutchinson_trace` — ``tr A = E[zᵀ A z]`` for Rademacher ``z``.
- :func:`hutchpp_trace` — Hutch++ (Meyer, Musco, Musco & Woodruff 2021): exact trace of a sketched
  top subspace plus Hutchinson on the rest; much lower variance when the spectrum decays.
- :func:`spectral_density` — stochastic Lanczos quadrature (Golub & Meurant; Ghorbani, Krishnan & Xiao
  2019 for neural-network Hessians): a Gaussian-smoothed estimate of the eigenvalue density.

Operators are as in :mod:`stability.linalg`; each estimate reports the products it spent. Probes come
from the ``generator`` passed (default: one seeded with 0), never from the global RNG.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from .errors import BadInputError
from .linalg import _Krylov, apply_block, as_operator, random_vectors, seeded


@dataclass(frozen=True)
class TraceResult:
    """A trace estimate with its evidence.

    Attributes:
        estimate: the mean of ``samples``.
        stderr: ``std(samples) / sqrt(len(samples))`` (for Hutch++: conditional on the sketch, whose part
            of the estimate is exact).
        samples: ``(m,)`` independent unbiased estimates of the trace.
        num_hvps: operator products spent.
        method: ``hutchinson``, ``hutch++`` or ``slq``.
    """

    estimate: float
    stderr: float
    samples: Tensor = field(repr=False)
    num_hvps: int
    method: str

    def to_dict(self) -> dict[str, Any]:
        return {"estimate": self.estimate, "stderr": self.stderr, "num_samples": len(self.samples),
                "num_hvps": self.num_hvps, "method": self.method}


def _summarize(samples: Tensor, num_hvps: int, method: str) -> TraceResult:
    samples = samples.detach().to(device="cpu", dtype=torch.float64)
    m = len(samples)
    stderr = float(samples.std(unbiased=True) / math.sqrt(m)) if m > 1 else float("inf")
    return TraceResult(float(samples.mean()), stderr, samples, num_hvps, method)


def _check_count(name: str, value: int, least: int) -> None:
    if not (isinstance(value, int) and value >= least):
        raise BadInputError(f"{name} must be an integer of at least {least}, got {value!r}")


def _probes_times_op(op: Any, Z: Tensor, block_size: int) -> Tensor:
    """``diag(Zᵀ A Z)`` for ``Z: (D, m)``, applying ``A`` to ``block_size`` columns at a time."""
    out = [(Zb * apply_block(op, Zb)).sum(0) for Zb in Z.split(block_size, dim=1)]
    return torch.cat(out)


def hutchinson_trace(
    op: Any, num_samples: int, *, generator: torch.Generator | None = None, block_size: int = 1
) -> TraceResult:
    """Hutchinson's estimate ``tr A ≈ (1/m) Σ_i z_iᵀ A z_i``, ``z_i`` Rademacher in ``{±1}^D``.

    Unbiased; the variance of one sample is ``2 (‖A‖_F² − Σ_j A_jj²)``, so the error falls as
    ``1/sqrt(m)``. Cost: ``m`` products (``block_size`` of them batched together when the operator has
    ``matmat``; memory grows with ``block_size``).
    """
    op = as_operator(op)
    _check_count("num_samples", num_samples, 1)
    _check_count("block_size", block_size, 1)
    Z = random_vectors(op.dim, num_samples, dtype=op.dtype, device=op.device, generator=seeded(generator),
                       kind="rademacher")
    return _summarize(_probes_times_op(op, Z, block_size), num_samples, "hutchinson")


def hutchpp_trace(
    op: Any, num_hvps: int, *, generator: torch.Generator | None = None, block_size: int = 1
) -> TraceResult:
    """Hutch++ with a budget of ``num_hvps`` products (Meyer et al. 2021).

    With ``s = num_hvps // 3`` and ``g = num_hvps − 2s``: sketch ``Q = orth(A S)`` for Rademacher
    ``S: (D, s)``; then ``tr A = tr(Qᵀ A Q) + tr((I − QQᵀ) A (I − QQᵀ))``, the first term exact
    (``s`` products) and the second by Hutchinson with ``g`` projected Rademacher probes. ``samples``
    are ``tr(Qᵀ A Q) + g_iᵀ (I − QQᵀ) A (I − QQᵀ) g_i``; ``stderr`` is conditional on ``Q``.
    When the top ``s`` eigenvalues hold most of the trace (typical of network Hessians), the error
    falls as ``1/m`` rather than ``1/sqrt(m)``.

    Cost: ``2s + g = num_hvps`` products; ``2 s D`` memory for the sketch.
    """
    op = as_operator(op)
    _check_count("num_hvps", num_hvps, 3)
    _check_count("block_size", block_size, 1)
    s = num_hvps // 3
    g = num_hvps - 2 * s
    generator = seeded(generator)
    S = random_vectors(op.dim, s, dtype=op.dtype, device=op.device, generator=generator, kind="rademacher")
    Y = torch.cat([apply_block(op, Sb) for Sb in S.split(block_size, dim=1)], dim=1)
    Q, _ = torch.linalg.qr(Y)
    low_rank = torch.cat([(Qb * apply_block(op, Qb)).sum(0) for Qb in Q.split(block_size, dim=1)]).sum()
    G = random_vectors(op.dim, g, dtype=op.dtype, device=op.device, generator=generator, kind="rademacher")
    G = G - Q @ (Q.T @ G)
    samples = low_rank + _probes_times_op(op, G, block_size)
    return _summarize(samples, num_hvps, "hutch++")


@dataclass(frozen=True)
class SpectralDensity:
    """Stochastic Lanczos quadrature: per probe, a Gauss quadrature rule for the spectral measure.

    For a unit probe ``v``, ``m`` Lanczos steps give ``T_m = S diag(θ) Sᵀ``; the nodes ``θ_j`` and weights
    ``τ_j = S_{0j}²`` satisfy ``Σ_j τ_j p(θ_j) = vᵀ p(A) v`` for every polynomial of degree ``≤ 2m − 1``.
    Averaging over Rademacher probes (``E[v vᵀ] = I/D``) estimates the normalized density
    ``φ(t) = (1/D) Σ_i δ(t − λ_i)``.

    Attributes:
        nodes: ``(P, m)`` Ritz values per probe (float64, CPU); padded with zeros of weight 0 when a
            probe's Krylov space closed early (fewer than ``m`` distinct eigenvalues reached).
        weights: ``(P, m)``, each row sums to 1.
        dim: ``D``.
        num_hvps: products spent (``P · m`` at most).
    """

    nodes: Tensor
    weights: Tensor
    dim: int
    num_hvps: int

    def density(self, grid: Tensor, sigma: float) -> Tensor:
        """Gaussian-smoothed density on ``grid: (G,)``: ``(1/P) Σ_p Σ_j τ_pj N(t; θ_pj, σ²)``.

        Integrates to 1 over the real line; pick ``sigma`` near the grid spacing or wider.
        """
        if not sigma > 0:
            raise BadInputError(f"sigma must be positive, got {sigma}")
        t = grid.to(torch.float64).reshape(-1, 1, 1)
        kernel = torch.exp(-0.5 * ((t - self.nodes) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))
        return (kernel * self.weights).sum(-1).mean(-1)

    def moments(self, k: int) -> TraceResult:
        """Estimate of ``(1/D) tr(A^k)``: per probe ``Σ_j τ_j θ_j^k = vᵀ A^k v`` (exact for ``k ≤ 2m−1``)."""
        _check_count("k", k, 0)
        return _summarize((self.weights * self.nodes**k).sum(-1), self.num_hvps, "slq")

    def trace(self) -> TraceResult:
        """Estimate of ``tr A = D · (1/D) tr A``."""
        m = self.moments(1)
        return TraceResult(m.estimate * self.dim, m.stderr * self.dim, m.samples * self.dim, m.num_hvps, "slq")


def spectral_density(
    op: Any, num_probes: int, lanczos_steps: int, *, generator: torch.Generator | None = None
) -> SpectralDensity:
    """Run ``lanczos_steps`` steps of Lanczos (full reorthogonalization) from each of ``num_probes``
    normalized Rademacher probes and keep the quadrature nodes and weights (see :class:`SpectralDensity`).

    Cost: ``num_probes · lanczos_steps`` products; ``lanczos_steps · D`` memory per probe.
    """
    op = as_operator(op)
    _check_count("num_probes", num_probes, 1)
    _check_count("lanczos_steps", lanczos_steps, 1)
    m = min(lanczos_steps, op.dim)
    nodes = torch.zeros(num_probes, m, dtype=torch.float64)
    weights = torch.zeros(num_probes, m, dtype=torch.float64)
    probes = random_vectors(op.dim, num_probes, dtype=op.dtype, device=op.device,
                            generator=seeded(generator), kind="rademacher")
    breakdown_tol = math.sqrt(op.dim) * torch.finfo(op.dtype).eps
    spent = 0
    for p in range(num_probes):
        kry = _Krylov(op, m, probes[:, p])
        while True:
            w = kry.step()
            spent += 1
            if kry.size == m or kry.beta <= breakdown_tol * float(kry.T.abs().max()):
                break
            kry.Q[kry.size] = w / kry.beta
        theta, S = torch.linalg.eigh(kry.projected())
        nodes[p, : kry.size] = theta
        weights[p, : kry.size] = S[0] ** 2
    return SpectralDensity(nodes=nodes, weights=weights, dim=op.dim, num_hvps=spent)
