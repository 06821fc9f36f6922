"""Do the measures predict generalization? Rank statistics of each measure against the gap over many runs.

Following Jiang, Neyshabur, Mobahi, Krishnan & Bengio (2020), "Fantastic generalization measures and where
to find them", for each measure ``μ`` over runs ``θ`` with gap ``g(θ)``:

- **Kendall's τ** (``τ_b``: ties counted as in :func:`~stability.analysis.correlate_stats.kendall_tau_b`)
  of ``μ`` with ``g`` over all runs;
- the **granulated τ** ``ψ_i``: for hyperparameter ``i``, the runs that agree on every other
  hyperparameter form a group, ``τ_b`` is computed within each group and averaged over the groups where it
  is defined; **Ψ** is the mean of ``ψ_i`` over the hyperparameters;
- the **conditional mutual information** ``K(μ) = min_{S, |S| ≤ 2} Î(V_μ; V_g | U_S)`` over pairs of runs
  (:func:`~stability.analysis.correlate_stats.conditional_mutual_information`): how much the order of two
  runs' measures says about the order of their gaps once the values of any (at most two) hyperparameters
  are known; 1 when it decides it, 0 when it adds nothing.

Each comes with a percentile bootstrap interval over resamples of the runs (seeded). τ and ψ are positive
when a larger measure goes with a larger gap; K does not see the sign. Measures are ranked by K, then |Ψ|.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from rich.table import Table

from stability import __version__
from stability.analysis.correlate_options import CorrelateOptions
from stability.analysis.correlate_runs import RunTable
from stability.analysis.correlate_stats import (
    bootstrap_weights,
    conditional_mutual_information,
    grouped_tau_b,
    joint_codes,
    percentile_interval,
)
from stability.serialize import to_json

SCHEMA = "stability-correlate"


SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Estimate:
    """A statistic, its percentile bootstrap interval ``[low, high]`` (``None`` without resamples, or when
    fewer than half of them define it) and the number of resamples that defined it."""

    value: float
    low: float | None
    high: float | None
    resamples: int


@dataclass(frozen=True)
class Granulated:
    """``ψ_i`` of one hyperparameter: the mean ``τ_b`` over ``groups`` groups of runs that agree on every other
    hyperparameter (of ``total_groups``; the rest have fewer than two distinct values of the measure or gap)."""

    hyperparameter: str
    tau: Estimate
    groups: int
    total_groups: int


@dataclass(frozen=True)
class MeasureCorrelation:
    """One measure against the gap: ``tau``, ``granulated`` (``ψ_i`` per hyperparameter), ``psi`` (their
    mean Ψ), ``cmi`` (``K = min_S Î``), ``cmi_argmin`` (the set ``S`` attaining it at the estimate) and
    ``cmi_by_set`` (``Î`` for every set, ``None`` where the set alone orders every pair's gaps)."""

    name: str
    tau: Estimate
    granulated: tuple[Granulated, ...]
    psi: Estimate
    cmi: Estimate
    cmi_argmin: str | None
    cmi_by_set: dict[str, float | None]


@dataclass(frozen=True)
class Correlation:
    """Every measure's :class:`MeasureCorrelation`, ranked (by ``cmi``, then ``|psi|``), with the runs and
    the options they were computed from."""

    table: RunTable
    options: CorrelateOptions
    measures: tuple[MeasureCorrelation, ...]

    def to_json(self) -> dict[str, Any]:
        """The JSON document of ``stability correlate --json`` (schema in docs/correlate.md)."""
        return {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "stability_version": __version__,
                **to_json({"options": self.options, "runs": self.table, "measures": self.measures})}  # fmt: skip


def correlate(table: RunTable, options: CorrelateOptions = CorrelateOptions()) -> Correlation:
    """Kendall's τ, the granulated τ and Ψ, and the conditional mutual information of every measure of
    ``table`` with its gap, each with a bootstrap interval (see the module docstring).

    Cost: with ``n`` runs, ``M`` measures, ``h`` hyperparameters and ``C = Σ_{k ≤ max_conditioning} (h choose
    k)`` conditioning sets, ``O((h + 1) M resamples n²)`` for τ and ψ and ``O(C M cmi_resamples n²)`` for the
    mutual information; on 300 runs, 20 measures and 7 hyperparameters, 20 s on a loaded 2-core machine, most
    of it the mutual information's resamples (docs/correlate.md).
    """
    gap = np.asarray(table.gap, dtype=np.float64)
    n = len(gap)
    names = list(table.measures)
    values = np.asarray([table.measures[k] for k in names], dtype=np.float64)
    codes = np.asarray([h.codes for h in table.hyperparameters], dtype=np.int64).T  # (n, h)
    hnames = [h.name for h in table.hyperparameters]
    o = options
    boot = bootstrap_weights(n, max(o.resamples, o.cmi_resamples), o.seed)
    weights = np.vstack([np.ones((1, n)), boot[:o.resamples]])
    everyone = np.zeros(n, dtype=np.int64)
    others = [joint_codes(np.delete(codes, k, axis=1)) for k in range(len(hnames))]

    sets = [s for size in range(min(o.max_conditioning, len(hnames)) + 1)
            for s in itertools.combinations(range(len(hnames)), size)]  # fmt: skip
    set_names = [", ".join(hnames[k] for k in s) or "∅" for s in sets]
    cmi = conditional_mutual_information(values, gap, [joint_codes(codes[:, list(s)]) for s in sets],
                                         np.vstack([np.ones((1, n)), boot[:o.cmi_resamples]]))  # fmt: skip

    results = []
    for m, name in enumerate(names):
        tau = grouped_tau_b(values[m], gap, everyone, weights)[:, 0]
        granulated, psis = [], []
        for hname, groups in zip(hnames, others):
            per_group = grouped_tau_b(values[m], gap, groups, weights)
            psi = _nanmean(per_group, axis=1)
            psis.append(psi)
            granulated.append(Granulated(hname, _estimate(psi, o), int(np.isfinite(per_group[0]).sum()),
                                         per_group.shape[1]))  # fmt: skip
        k = _nanmin(cmi[:, m, :], axis=1)
        best = cmi[0, m, :]
        results.append(MeasureCorrelation(
            name=name, tau=_estimate(tau, o), granulated=tuple(granulated),
            psi=_estimate(_nanmean(np.stack(psis, axis=1), axis=1), o), cmi=_estimate(k, o),
            cmi_argmin=set_names[int(np.nanargmin(best))] if np.isfinite(best).any() else None,
            cmi_by_set={s: (float(v) if math.isfinite(v) else None) for s, v in zip(set_names, best)},
        ))  # fmt: skip
    results.sort(key=lambda r: (-_or(r.cmi.value, -1.0), -abs(_or(r.psi.value, 0.0)), r.name))
    return Correlation(table=table, options=options, measures=tuple(results))


def correlation_table(result: Correlation) -> Table:
    """A row per measure, in rank order: τ, Ψ and K with their intervals, and the set ``S`` attaining K."""
    t, o = result.table, result.options
    table = Table(title=f"measures vs {o.gap} gap, {len(t.runs)} runs, {o.confidence:.0%} bootstrap intervals")
    width = min(28, max(len(r.name) for r in result.measures))
    table.add_column("measure", overflow="fold", min_width=width)
    table.add_column("Kendall τ", justify="right")
    table.add_column("Ψ", justify="right")
    table.add_column("K (CMI)", justify="right")
    table.add_column("argmin S", overflow="fold", min_width=8)
    for r in result.measures:
        table.add_row(r.name, _cell(r.tau), _cell(r.psi), _cell(r.cmi, "{:.3f}"), r.cmi_argmin or "—")
    return table


def granulated_table(result: Correlation) -> Table:
    """A row per measure, a column per hyperparameter: ``ψ_i``, with the groups it averages (defined / all)."""
    table = Table(title="granulated τ ψ_i: τ within groups of runs that differ only in hyperparameter i")
    table.add_column("measure", overflow="fold", min_width=min(28, max(len(r.name) for r in result.measures)))
    for h in result.table.hyperparameters:
        table.add_column(f"ψ {h.name}", justify="right", overflow="fold")
    for r in result.measures:
        table.add_row(r.name, *(f"{_number(g.tau.value)} ({g.groups}/{g.total_groups})" for g in r.granulated))
    return table


def _estimate(samples: np.ndarray, o: CorrelateOptions) -> Estimate:
    """The estimate (row 0) and the interval of the bootstrap rows."""
    low, high, defined = percentile_interval(samples[1:], o.confidence)
    return Estimate(float(samples[0]), low, high, defined)


def _nanmean(a: np.ndarray, axis: int) -> np.ndarray:
    defined = np.isfinite(a)
    count = defined.sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, np.where(defined, a, 0.0).sum(axis=axis) / count, np.nan)


def _nanmin(a: np.ndarray, axis: int) -> np.ndarray:
    return np.where(np.isfinite(a).any(axis=axis), np.where(np.isfinite(a), a, np.inf).min(axis=axis), np.nan)


def _or(value: float, default: float) -> float:
    return value if math.isfinite(value) else default


def _number(value: float | None, fmt: str = "{:+.3f}") -> str:
    return "—" if value is None or not math.isfinite(value) else fmt.format(value)


def _cell(e: Estimate, fmt: str = "{:+.3f}") -> str:
    """The value, and below it its interval to two decimals."""
    if e.low is None or e.high is None:
        return _number(e.value, fmt)
    short = fmt.replace(".3f", ".2f")
    return f"{_number(e.value, fmt)}\n[{_number(e.low, short)}, {_number(e.high, short)}]"
