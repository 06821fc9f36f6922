"""Finite-sample expressivity (Zhang et al. 2017, Theorem 1), built constructively.

Theorem: for any ``n`` distinct points ``x_1..x_n ∈ R^d`` and any labels ``y ∈ R^n`` there is a depth-2
ReLU network ``c(x) = Σ_j w_j max(⟨a, x⟩ − b_j, 0)`` with ``2n + d`` weights (``a ∈ R^d``, ``b, w ∈ R^n``)
such that ``c(x_i) = y_i`` for all ``i``.

Construction: draw a direction ``a``; for distinct points the projections ``z_i = ⟨a, x_i⟩`` are distinct
with probability one. Sort them, ``z_(1) < ... < z_(n)``, and interleave biases
``b_1 < z_(1) < b_2 < z_(2) < ... < b_n < z_(n)`` (here ``b_1 = z_(1) − (z_(2) − z_(1))/2`` and
``b_j = (z_(j−1) + z_(j))/2``). Then ``A_ij = max(z_(i) − b_j, 0)`` vanishes for ``i < j`` and is positive
for ``i ≥ j``: ``A`` is lower-triangular with positive diagonal, hence invertible, and ``w = A⁻¹ y``
(labels in sorted order) interpolates. Cost: an ``O(n d)`` projection, a sort, and an ``O(n²)``
triangular solve. Labels ``y: (n, k)`` give ``k`` outputs sharing ``a, b`` (``n (k + 1) + d`` weights).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from stability.errors import BadInputError


@dataclass(frozen=True)
class FiniteSampleFit:
    """The constructed network and the evidence that it interpolates.

    Attributes:
        a: projection direction ``(d,)``.
        b: biases ``(n,)``, increasing, interleaved with the sorted projections.
        w: output weights ``(n,)`` (or ``(n, k)``), aligned with ``b``.
        z: projections ``⟨a, x_i⟩`` in the original order ``(n,)``.
        design: ``A = max(z_sorted[:, None] − b[None, :], 0)``, ``(n, n)`` lower-triangular.
        max_fit_error: ``max_i |c(x_i) − y_i|`` evaluated through the network (not through ``A``).
        error_bound: ``n ε max_i (|A| |w|)_i`` (``ε`` the dtype's unit round-off): the size of rounding error a
            backward-stable solve and evaluation can leave. Exact arithmetic fits exactly; in floating point
            ``max_fit_error`` should be a small multiple of this, which grows as projections crowd together.
    """

    a: Tensor
    b: Tensor
    w: Tensor
    z: Tensor
    design: Tensor
    max_fit_error: float
    error_bound: float

    @property
    def num_weights(self) -> int:
        """``d + n + n k`` — ``2n + d`` for scalar labels, as in the theorem."""
        return self.a.numel() + self.b.numel() + self.w.numel()

    def __call__(self, x: Tensor) -> Tensor:
        """``c(x)`` for ``x: (m, d)``; returns ``(m,)`` (or ``(m, k)``)."""
        return relu_features(x @ self.a, self.b) @ self.w


def relu_features(z: Tensor, b: Tensor) -> Tensor:
    """``max(z_i − b_j, 0)``: ``(m, n)`` for projections ``z: (m,)`` and biases ``b: (n,)``."""
    return torch.relu(z[:, None] - b[None, :])


def fit_finite_sample(
    X: Tensor, y: Tensor, *, generator: torch.Generator | int = 0, min_gap: float = 1e-9, max_tries: int = 8
) -> FiniteSampleFit:
    """Zhang et al.'s constructive interpolating ReLU network for ``X: (n, d)``, ``y: (n,)`` or ``(n, k)``.

    Args:
        X: distinct data points (any floating dtype/device; float64 recommended).
        y: labels, real-valued (class labels as numbers, or one-hot rows for ``k`` outputs).
        generator: a ``torch.Generator`` (or seed) for the random direction ``a ~ N(0, I_d)``.
        min_gap: smallest accepted spacing of sorted projections, relative to their spread; a direction
            closer to degenerate is redrawn (up to ``max_tries`` times).

    Raises:
        BadInputError: shapes disagree, two points coincide, or no direction separated the points.
    """
    if X.ndim != 2 or y.shape[:1] != X.shape[:1] or y.ndim not in (1, 2) or X.shape[0] == 0:
        raise BadInputError(
            f"X must be (n, d) and y (n,) or (n, k) with n ≥ 1; got X {tuple(X.shape)} and y {tuple(y.shape)}"
        )
    if not X.is_floating_point():
        X = X.to(torch.get_default_dtype())
    y = y.to(X)
    n, d = X.shape
    _check_distinct(X)
    gen = _generator(generator, X.device)
    for _ in range(max_tries):
        a = torch.randn(d, generator=gen, dtype=X.dtype, device=gen.device).to(X.device)
        z = X @ a
        zs, order = torch.sort(z)
        gaps = zs.diff()
        spread = (zs[-1] - zs[0]).abs().clamp_min(zs.abs().max().clamp_min(1.0))
        if n == 1 or gaps.min() > min_gap * spread:
            break
    else:
        raise BadInputError(
            f"no random direction separated the {n} points by more than {min_gap:g} of their spread in "
            f"{max_tries} tries; the points are (numerically) almost coincident — deduplicate or rescale them"
        )
    first_gap = gaps[0] if n > 1 else zs.new_tensor(1.0)
    b = torch.cat([(zs[:1] - first_gap / 2), (zs[:-1] + zs[1:]) / 2])
    A = relu_features(zs, b)
    # A is exactly lower-triangular (z_(i) < b_j for i < j), so a triangular solve is the whole inverse.
    rhs = y[order] if y.ndim == 2 else y[order, None]
    w = torch.linalg.solve_triangular(A, rhs, upper=False)
    w = w if y.ndim == 2 else w[:, 0]
    fit = FiniteSampleFit(a=a, b=b, w=w, z=z, design=A, max_fit_error=0.0, error_bound=0.0)
    error = float((fit(X) - y).abs().max())
    scale = A.abs() @ (w.abs() if w.ndim == 2 else w.abs()[:, None])
    bound = n * torch.finfo(X.dtype).eps * float(scale.max())
    return FiniteSampleFit(a=a, b=b, w=w, z=z, design=A, max_fit_error=error, error_bound=bound)


def _check_distinct(X: Tensor) -> None:
    if X.shape[0] < 2:
        return
    dist = torch.cdist(X, X)
    dist.fill_diagonal_(float("inf"))
    i, j = divmod(int(dist.argmin()), X.shape[0])
    if dist[i, j] == 0:
        raise BadInputError(
            f"points {min(i, j)} and {max(i, j)} coincide; Theorem 1 needs distinct points — remove duplicates"
        )


def _generator(generator: torch.Generator | int, device: torch.device) -> torch.Generator:
    if isinstance(generator, torch.Generator):
        return generator
    # Draw on the CPU for seeds so that a seed gives the same direction on every device.
    gen = torch.Generator(device="cpu")
    gen.manual_seed(int(generator))
    return gen
