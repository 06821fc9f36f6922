"""Stochastic estimates of spectral sums of a symmetric operator seen only through products ``v ↦ A v``.

- :func:`hutchinson_trace` — ``tr A = E[zᵀ A z]`` for Rademacher ``z``.
- :func:`hutchpp_trace` — Hutch++ (Meyer, Musco, Musco & Woodruff 2021): exact trace of a sketched
  top subspace plus Hutchinson on the rest; much lower variance when the spectrum decays.
- :func:`spectral_density` — stochastic Lanczos quadrature (Golub & Meurant; Ghorbani, Krishnan & Xiao
  2019 for neural-network Hessians): a Gaussian-smoothed estimate of the eigenvalue density.

Operators are as in :mod:`stability.curvature.lanczos`; each estimate reports the products it spent. Probes come
from the ``generator`` passed (default: one seeded with 0), never from the global RNG.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from stability.checks import check_count
from stability.curvature.operators import apply_block, as_operator, random_vectors, seeded
from stability.serialize import omitted


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

    :func:`stability.serialize.to_json` writes ``num_samples`` in place of the samples themselves.
    """

    estimate: float
    stderr: float
    samples: Tensor = omitted()
    num_hvps: int
    method: str

    __json_properties__ = ("num_samples",)

    @property
    def num_samples(self) -> int:
        """``m``, the number of independent estimates averaged."""
        return len(self.samples)


def _summarize(samples: Tensor, num_hvps: int, method: str) -> TraceResult:
    samples = samples.detach().to(device="cpu", dtype=torch.float64)
    m = len(samples)
    stderr = float(samples.std(unbiased=True) / math.sqrt(m)) if m > 1 else float("inf")
    return TraceResult(float(samples.mean()), stderr, samples, num_hvps, method)


def _probes_times_op(op: Any, Z: Tensor, block_size: int) -> Tensor:
    """``diag(Zᵀ A Z)`` for ``Z: (D, m)``, applying ``A`` to ``block_size`` columns at a time."""
    out = [(Zb * apply_block(op, Zb)).sum(0) for Zb in Z.split(block_size, dim=1)]
    return torch.cat(out)


def hutchinson_trace(
    op: Any, num_probes: int, *, generator: torch.Generator | None = None, block_size: int = 1
) -> TraceResult:
    """Hutchinson's estimate ``tr A ≈ (1/m) Σ_i z_iᵀ A z_i``, ``z_i`` Rademacher in ``{±1}^D``.

    Unbiased; the variance of one sample is ``2 (‖A‖_F² − Σ_j A_jj²)``, so the error falls as
    ``1/sqrt(m)``. Cost: ``m`` products (``block_size`` of them batched together when the operator has
    ``matmat``; memory grows with ``block_size``).
    """
    op = as_operator(op)
    check_count("num_probes", num_probes, 1)
    check_count("block_size", block_size, 1)
    Z = random_vectors(op.dim, num_probes, dtype=op.dtype, device=op.device, generator=seeded(generator),
                       kind="rademacher")
    return _summarize(_probes_times_op(op, Z, block_size), num_probes, "hutchinson")


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
    check_count("num_hvps", num_hvps, 3)
    check_count("block_size", block_size, 1)
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
