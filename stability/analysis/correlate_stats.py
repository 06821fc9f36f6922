"""Rank statistics of a measure against the generalization gap over runs, as functions of run weights.

Each statistic takes ``weights: (R, n)``: row ``r`` counts run ``i`` ``weights[r, i]`` times. A row of ones
gives the estimate; rows of multinomial counts (:func:`bootstrap_weights`) give bootstrap resamples of the
runs, so the estimate and its bootstrap distribution come from one code path, and a resample is never
materialized (a run drawn twice is a pair of copies, tied in everything, exactly as in the resampled list).

Costs are quadratic in the number of runs ``n`` (every pair of runs is compared): the τ statistics are
matrix products of ``(R, n_g)`` weights with each group's ``(n_g, n_g)`` pair matrices, at most ``O(R n²)``
time and ``O(n²)`` memory;
the mutual information is ``O(R n²)`` per conditioning set.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

Array = NDArray[np.float64]


def bootstrap_weights(n: int, resamples: int, seed: int) -> Array:
    """``(resamples, n)`` multinomial counts: each row draws ``n`` runs with replacement."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n, np.full(n, 1.0 / n), size=resamples).astype(np.float64)


def kendall_tau_b(x: ArrayLike, y: ArrayLike) -> float:
    """Kendall's ``τ_b = (n_c − n_d) / √((n_0 − n_1)(n_0 − n_2))`` of two sequences of equal length.

    ``n_c``, ``n_d``: pairs ordered alike / oppositely by ``x`` and ``y``; ``n_0 = n(n − 1)/2``; ``n_1``,
    ``n_2``: pairs tied in ``x``, in ``y``. NaN when either sequence is constant. ``O(n²)``.
    """
    x = np.asarray(x, dtype=np.float64)
    return float(grouped_tau_b(x, y, np.zeros(len(x), dtype=np.int64), np.ones((1, len(x))))[0, 0])


def grouped_tau_b(x: ArrayLike, y: ArrayLike, groups: ArrayLike, weights: Array) -> Array:
    """``τ_b`` of ``(x, y)`` within each group of runs, for each row of ``weights``: ``(R, G)``.

    With ``S_ij = sign(x_i − x_j) sign(y_i − y_j)``, ``T^x_ij = [x_i = x_j]``, ``T^y_ij = [y_i = y_j]``, and
    ``w`` a row of weights restricted to group ``g`` (``m = Σ w``), the resampled list's pair counts are
    quadratic forms, so ``τ_b = wᵀ S w / √((m² − wᵀ T^x w)(m² − wᵀ T^y w))`` (the copies of one run are pairs
    tied in both). NaN where a group has fewer than two distinct values of ``x`` or ``y``.

    Args:
        x, y: ``(n,)``. groups: ``(n,)`` integer labels ``0..G−1``. weights: ``(R, n)``.
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    groups = np.asarray(groups)
    out = np.full((weights.shape[0], int(groups.max()) + 1), np.nan)
    for g in range(out.shape[1]):
        idx = np.flatnonzero(groups == g)
        if len(idx) < 2:
            continue
        w = weights[:, idx]
        sx, sy = np.sign(x[idx, None] - x[None, idx]), np.sign(y[idx, None] - y[None, idx])

        def form(matrix: Array, w: Array = w) -> Array:
            return ((w @ matrix) * w).sum(axis=1)

        m2 = w.sum(axis=1) ** 2
        denominator = (m2 - form((sx == 0).astype(np.float64))) * (m2 - form((sy == 0).astype(np.float64)))
        with np.errstate(divide="ignore", invalid="ignore"):
            out[:, g] = np.where(denominator > 0, form(sx * sy) / np.sqrt(np.maximum(denominator, 1e-300)), np.nan)
    return out


def joint_codes(columns: Array) -> NDArray[np.int64]:
    """Integer labels ``(n,)`` of the distinct rows of ``columns: (n, k)`` (all zeros for ``k = 0``)."""
    if columns.shape[1] == 0:
        return np.zeros(columns.shape[0], dtype=np.int64)
    return np.unique(columns, axis=0, return_inverse=True)[1].reshape(-1).astype(np.int64)


def conditional_mutual_information(measures: Array, gap: ArrayLike, conditions: list[NDArray[np.int64]],
                                   weights: Array, *, chunk: int = 2_000_000) -> Array:  # fmt: skip
    """Normalized ``Î(V_μ; V_g | U_S) = I(V_μ; V_g | U_S) / H(V_g | U_S)`` for each measure and condition.

    Over ordered pairs of runs ``(i, j)`` with different gaps (each pair weighted ``w_i w_j``):
    ``V_g = sign(g_i − g_j)`` (±1), ``V_μ = sign(μ_i − μ_j)`` (−1, 0, +1), ``U_S = (c_i, c_j)`` the labels of
    the runs' values of the hyperparameters in ``S``. Plug-in (empirical) probabilities, natural logarithms;
    NaN where ``H(V_g | U_S) = 0`` (the condition alone fixes the gap's order: nothing is left to explain).

    Args:
        measures: ``(M, n)``. gap: ``(n,)``. conditions: one ``(n,)`` label array per set ``S``.
        weights: ``(R, n)``. chunk: bound on the pair-by-resample elements held at once (memory).

    Returns:
        ``(R, M, len(conditions))``. Cost ``O(R M |conditions| n²)``.
    """
    g = np.asarray(gap, dtype=np.float64)
    i, j = np.triu_indices(len(g), 1)
    keep = g[i] != g[j]
    i, j = i[keep], j[keep]
    b = (g[i] > g[j]).astype(np.int64)
    signs = [(np.sign(mu[i] - mu[j]) + 1).astype(np.int64) for mu in np.asarray(measures, dtype=np.float64)]
    R = weights.shape[0]
    out = np.full((R, len(signs), len(conditions)), np.nan)
    step = max(1, chunk // max(1, len(i)))
    for start in range(0, R, step):
        w = weights[start:start + step]
        pair_weights = (w[:, i] * w[:, j]).reshape(-1)
        r = w.shape[0]
        for s, codes in enumerate(conditions):
            k = int(codes.max()) + 1
            u = codes[i] * k + codes[j]
            cells = k * k * 6
            offsets = (np.arange(r) * cells)[:, None]
            for m, a in enumerate(signs):
                idx = (offsets + ((u * 3 + a) * 2 + b)[None, :]).reshape(-1)
                counts = np.bincount(idx, weights=pair_weights, minlength=r * cells).reshape(r, k, k, 3, 2)
                # The unordered pair (i, j) is also the ordered pair (j, i): labels swapped, both signs flipped.
                counts = counts + counts.transpose(0, 2, 1, 3, 4)[:, :, :, ::-1, ::-1]
                out[start:start + r, m, s] = _normalized_cmi(counts.reshape(r, k * k, 3, 2))
    return out


def _normalized_cmi(counts: Array) -> Array:
    """``I(A; B | U) / H(B | U)`` per row of ``counts: (R, U, A, B)``."""
    total = counts.sum(axis=(1, 2, 3))
    n_u = counts.sum(axis=(2, 3), keepdims=True)
    n_ua = counts.sum(axis=3, keepdims=True)
    n_ub = counts.sum(axis=2, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        info = np.where(counts > 0, counts * np.log(counts * n_u / (n_ua * n_ub)), 0.0).sum(axis=(1, 2, 3))
        entropy = -np.where(n_ub > 0, n_ub * np.log(n_ub / n_u), 0.0).sum(axis=(1, 2, 3))
        ratio = info / entropy
    return np.where((entropy > 1e-12 * np.maximum(total, 1)) & (total > 0), np.clip(ratio, 0.0, 1.0), np.nan)


def percentile_interval(samples: Array, confidence: float) -> tuple[float | None, float | None, int]:
    """The percentile bootstrap interval of ``samples: (R,)`` (NaNs left out) and how many were defined;
    ``(None, None, k)`` when fewer than half the resamples define the statistic."""
    defined = samples[np.isfinite(samples)]
    if len(samples) == 0 or len(defined) < len(samples) / 2:
        return None, None, len(defined)
    low, high = np.quantile(defined, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(low), float(high), len(defined)
