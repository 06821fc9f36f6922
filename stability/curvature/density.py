"""Spectral density of a symmetric operator by stochastic Lanczos quadrature (Golub & Meurant;
Ghorbani, Krishnan & Xiao 2019 for neural-network Hessians)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from stability.checks import check_count, check_positive
from stability.curvature.lanczos import _Krylov
from stability.curvature.operators import as_operator, random_vectors, seeded
from stability.curvature.trace import TraceResult, _summarize


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
        check_positive("sigma", sigma)
        t = grid.to(torch.float64).reshape(-1, 1, 1)
        kernel = torch.exp(-0.5 * ((t - self.nodes) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))
        return (kernel * self.weights).sum(-1).mean(-1)

    def moments(self, k: int) -> TraceResult:
        """Estimate of ``(1/D) tr(A^k)``: per probe ``Σ_j τ_j θ_j^k = vᵀ A^k v`` (exact for ``k ≤ 2m−1``)."""
        check_count("k", k, 0)
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
    check_count("num_probes", num_probes, 1)
    check_count("lanczos_steps", lanczos_steps, 1)
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
