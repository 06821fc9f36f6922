"""Stochastic estimates of spectral sums of a symmetric operator seen only through products ``v ↦ A v``.

- :func:`hutchinson_trace` — ``tr A = E[zᵀ A z]`` for Rademacher ``z``.
- :func:`hutchpp_trace` — Hutch++ (Meyer, Musco, Musco & Woodruff 2021): exact trace of a sketched
  top subspace plus Hutchinson on the rest; much lower variance when the spectrum decays.
- :func:`adaptive_trace` — Hutchinson or Hutch++, chosen after the sketch by the variance each would
  leave (the sketch's products double as Hutchinson probes, so a flat spectrum loses a third at most).
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
        method: ``hutchinson``, ``hutch++`` or ``slq``: for :func:`adaptive_trace`, the one it chose.
        sketch_fraction: for :func:`adaptive_trace`, the estimated share of ``‖A‖_F²`` outside the
            sketched subspace, ``‖(I − QQᵀ) A (I − QQᵀ)‖_F² / ‖A‖_F²``, on which the choice rests
            (``None`` otherwise).

    :func:`stability.serialize.to_json` writes ``num_samples`` in place of the samples themselves, and
    leaves out ``sketch_fraction``.
    """

    estimate: float
    stderr: float
    samples: Tensor = omitted()
    num_hvps: int
    method: str
    sketch_fraction: float | None = omitted(default=None)

    __json_properties__ = ("num_samples",)

    @property
    def num_samples(self) -> int:
        """``m``, the number of independent estimates averaged."""
        return len(self.samples)


def _summarize(samples: Tensor, num_hvps: int, method: str, sketch_fraction: float | None = None) -> TraceResult:
    samples = samples.detach().to(device="cpu", dtype=torch.float64)
    m = len(samples)
    stderr = float(samples.std(unbiased=True) / math.sqrt(m)) if m > 1 else float("inf")
    return TraceResult(float(samples.mean()), stderr, samples, num_hvps, method, sketch_fraction)


def _blocks(op: Any, V: Tensor, block_size: int) -> Tensor:
    """``A V`` for ``V: (D, k)``, ``block_size`` columns per ``matmat`` call."""
    return torch.cat([apply_block(op, Vb) for Vb in V.split(block_size, dim=1)], dim=1)


def _probes_times_op(op: Any, Z: Tensor, block_size: int) -> Tensor:
    """``diag(Zᵀ A Z)`` for ``Z: (D, m)``, applying ``A`` to ``block_size`` columns at a time."""
    return (Z * _blocks(op, Z, block_size)).sum(0)


def hutchinson_trace(
    op: Any, num_probes: int, *, generator: torch.Generator | None = None, block_size: int = 8
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
    op: Any, num_hvps: int, *, generator: torch.Generator | None = None, block_size: int = 8
) -> TraceResult:
    """Hutch++ with a budget of ``num_hvps`` products (Meyer et al. 2021).

    With ``s = num_hvps // 3`` and ``g = num_hvps − 2s``: sketch ``Q = orth(A S)`` for Rademacher
    ``S: (D, s)``; then ``tr A = tr(Qᵀ A Q) + tr((I − QQᵀ) A (I − QQᵀ))``, the first term exact
    (``s`` products) and the second by Hutchinson with ``g`` projected Rademacher probes. ``samples``
    are ``tr(Qᵀ A Q) + g_iᵀ (I − QQᵀ) A (I − QQᵀ) g_i``; ``stderr`` is conditional on ``Q``.
    When the top ``s`` eigenvalues hold most of the trace (typical of network Hessians), the error
    falls as ``1/m`` rather than ``1/sqrt(m)``.

    Cost: ``2s + g = num_hvps`` products; ``3 s D`` memory for the sketch.
    """
    sketch = _Sketch.checked(op, num_hvps, generator, block_size)
    g = num_hvps - 2 * sketch.s
    return _summarize(sketch.projected_samples(g), num_hvps, "hutch++")


class _Sketch:
    """Hutch++'s first two thirds: ``Y = A S`` for Rademacher ``S: (D, s)``, ``Q = orth(Y)``, ``A Q``."""

    def __init__(self, op: Any, s: int, generator: torch.Generator, block_size: int) -> None:
        self.op, self.s, self.generator, self.block_size = op, s, generator, block_size
        self.S = random_vectors(op.dim, s, dtype=op.dtype, device=op.device, generator=generator, kind="rademacher")
        self.Y = _blocks(op, self.S, block_size)
        self.Q, _ = torch.linalg.qr(self.Y)
        self.AQ = _blocks(op, self.Q, block_size)
        self.QAQ = self.Q.T @ self.AQ
        self.low_rank = self.QAQ.trace()

    @classmethod
    def checked(cls, op: Any, num_hvps: int, generator: torch.Generator | None, block_size: int) -> _Sketch:
        """The sketch of a Hutch++-style estimate with a budget of ``num_hvps``, its arguments checked."""
        op = as_operator(op)
        check_count("num_hvps", num_hvps, 3)
        check_count("block_size", block_size, 1)
        return cls(op, num_hvps // 3, seeded(generator), block_size)

    def projected_samples(self, g: int) -> Tensor:
        """``tr(Qᵀ A Q) + g_iᵀ (I − QQᵀ) A (I − QQᵀ) g_i`` for ``g`` Rademacher ``g_i``."""
        G = random_vectors(self.op.dim, g, dtype=self.op.dtype, device=self.op.device, generator=self.generator,
                           kind="rademacher")  # fmt: skip
        G = G - self.Q @ (self.Q.T @ G)
        return self.low_rank + _probes_times_op(self.op, G, self.block_size)

    def tail_fraction(self) -> tuple[float, float]:
        """``(‖A‖_F² estimate, ‖(I − QQᵀ) A (I − QQᵀ)‖_F² / ‖A‖_F²)``.

        ``E‖A z‖² = ‖A‖_F²`` for Rademacher ``z``, so the sketch's own columns estimate it; for symmetric
        ``A`` and ``P = I − QQᵀ``, ``‖P A P‖_F² = ‖A‖_F² − 2 ‖A Q‖_F² + ‖Qᵀ A Q‖_F²``.
        """
        fro2 = float(self.Y.square().sum()) / self.s
        tail = fro2 - 2 * float(self.AQ.square().sum()) + float(self.QAQ.square().sum())
        return fro2, max(tail, 0.0) / fro2 if fro2 > 0 else 0.0


def adaptive_trace(
    op: Any, num_hvps: int, *, generator: torch.Generator | None = None, block_size: int = 8
) -> TraceResult:
    """``tr A`` by Hutchinson or Hutch++, chosen by a spectrum check after the sketch, with a budget of
    ``num_hvps`` products.

    With ``s = num_hvps // 3``: apply ``A`` to Rademacher ``S: (D, s)`` and to ``Q = orth(A S)`` (``2s``
    products), which gives ``‖A‖_F² ≈ (1/s) ‖A S‖_F²`` and the tail ``t = ‖(I − QQᵀ) A (I − QQᵀ)‖_F²``
    (see ``sketch_fraction``). The remaining ``r = num_hvps − 2s`` products go to whichever estimator
    the variance of one Rademacher sample, about ``2 ‖·‖_F²``, predicts to be better: Hutch++ with ``r``
    projected probes (variance ``≈ 2t / r``) or Hutchinson with ``r`` fresh probes plus the ``s`` sketch
    columns, whose ``s_iᵀ A s_i`` are Hutchinson samples already (variance ``≈ 2‖A‖_F² / (s + r)``).
    A flat spectrum (tail share above about ``r / (s + r)``) thus costs Hutchinson a third of its
    probes, never more; a decaying one gets Hutch++. ``method`` says which ran.

    Cost: ``num_hvps`` products (at least 3); ``3 s D`` memory for the sketch.
    """
    sketch = _Sketch.checked(op, num_hvps, generator, block_size)
    op, generator, r = sketch.op, sketch.generator, num_hvps - 2 * sketch.s
    _, tail = sketch.tail_fraction()
    if tail / r < 1 / (sketch.s + r):
        return _summarize(sketch.projected_samples(r), num_hvps, "hutch++", tail)
    Z = random_vectors(op.dim, r, dtype=op.dtype, device=op.device, generator=generator, kind="rademacher")
    samples = torch.cat([(sketch.S * sketch.Y).sum(0), _probes_times_op(op, Z, block_size)])
    return _summarize(samples, num_hvps, "hutchinson", tail)
