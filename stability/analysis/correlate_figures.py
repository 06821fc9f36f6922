"""Figures of ``stability correlate``: each measure against the gap, and the ranking of the measures."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from stability.analysis.correlate import Correlation, Estimate
from stability.analysis.correlate_runs import Hyperparameter
from stability.errors import BadInputError
from stability.plotting import plt, save_png

GAP_LABELS = {"accuracy": "generalization gap (train − test accuracy)", "loss": "generalization gap (test − train loss)"}
MAX_LEGEND = 10  # up to this many levels get one legend entry each; more numeric levels get a colour bar


def color_hyperparameter(result: Correlation, name: str | None = None) -> Hyperparameter:
    """The hyperparameter named ``name``, or the one with the most distinct values (the first of equals)."""
    hyper = result.table.hyperparameters
    if name is None:
        return max(hyper, key=lambda h: len(h.levels))
    for h in hyper:
        if name == h.name or name in h.fields:
            return h
    raise BadInputError(f"color_by {name!r} is not a hyperparameter of these runs: {', '.join(h.name for h in hyper)}")


def scatter(result: Correlation, measure: str, path: str | Path, *, color_by: str | None = None) -> Path:
    """One point per run: the measure (x) against the gap (y), coloured by a hyperparameter's value."""
    table = result.table
    r = next(m for m in result.measures if m.name == measure)
    x, y = np.asarray(table.measures[measure]), np.asarray(table.gap)
    h = color_hyperparameter(result, color_by)
    fig, ax = plt.subplots(figsize=(5.6, 4.2))
    levels, codes = h.levels, np.asarray(h.codes)
    if h.numeric and len(levels) > MAX_LEGEND:
        values = np.asarray(h.values, dtype=np.float64)
        positive = bool((values > 0).all() and values.max() > 10 * values.min())
        from matplotlib.colors import LogNorm

        points = ax.scatter(x, y, c=values, cmap="viridis", s=18, norm=LogNorm() if positive else None)
        fig.colorbar(points, ax=ax, label=h.name)
    else:
        colors = plt.get_cmap("tab10" if len(levels) <= 10 else "tab20")
        for k, level in enumerate(levels):
            mask = codes == k
            ax.scatter(x[mask], y[mask], s=18, color=colors(k % colors.N), label=_level(level))
        ax.legend(title=h.name, fontsize=7, title_fontsize=8, ncol=1 + len(levels) // 12)
    if (x > 0).all() and x.max() > 100 * x.min():
        ax.set_xscale("log")
    ax.set_xlabel(measure)
    ax.set_ylabel(GAP_LABELS.get(table.gap_kind, "generalization gap"))
    ax.set_title(f"{measure} vs gap, {len(x)} runs: τ = {_fmt(r.tau.value)}, Ψ = {_fmt(r.psi.value)}, "
                 f"K = {_fmt(r.cmi.value, '{:.3f}')}", fontsize=9)  # fmt: skip
    return save_png(fig, Path(path))


def ranking(result: Correlation, path: str | Path) -> Path:
    """Three panels side by side, a bar per measure in rank order: τ, Ψ and K with their bootstrap intervals."""
    rows = result.measures
    fig, axes = plt.subplots(1, 3, figsize=(12, 0.9 + 0.32 * len(rows)), sharey=True, squeeze=False)
    ypos = np.arange(len(rows))[::-1]
    pct = f"{result.options.confidence:.0%}"
    panels = [("Kendall τ", lambda r: r.tau, (-1.05, 1.05)), ("Ψ (mean granulated τ)", lambda r: r.psi, (-1.05, 1.05)),
              ("K = min_S Î(V_μ; V_g | U_S)", lambda r: r.cmi, (0.0, 1.05))]  # fmt: skip
    for ax, (title, get, xlim) in zip(axes[0], panels):
        estimates: list[Estimate] = [get(r) for r in rows]
        value = np.asarray([_nan(e.value) for e in estimates])
        low = np.asarray([_nan(e.low) for e in estimates])
        high = np.asarray([_nan(e.high) for e in estimates])
        ax.barh(ypos, np.nan_to_num(value), color="tab:blue", alpha=0.8)
        # The interval as drawn from the resamples (a percentile interval need not contain the estimate).
        ok = np.isfinite(low) & np.isfinite(high)
        ax.hlines(ypos[ok], low[ok], high[ok], color="k", linewidth=1)
        ax.plot(np.concatenate([low[ok], high[ok]]), np.concatenate([ypos[ok], ypos[ok]]), "k|", markersize=6)
        ax.axvline(0, color="0.3", linewidth=0.8)
        ax.set_xlim(*xlim)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(f"value ({pct} bootstrap interval)")
    axes[0][0].set_yticks(ypos, [r.name for r in rows], fontsize=8)
    fig.suptitle(f"measures vs generalization gap ({result.table.gap_kind}), {len(result.table.runs)} runs, "
                 "ranked by K")  # fmt: skip
    return save_png(fig, Path(path))


def correlate_figures(result: Correlation, out_dir: str | Path, *, color_by: str | None = None) -> list[Path]:
    """``ranking.png`` and ``scatter-<measure>.png`` for every measure, in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    color_hyperparameter(result, color_by)  # a wrong name fails before any figure is drawn
    figures = [ranking(result, out / "ranking.png")]
    used: set[str] = set()
    for r in result.measures:
        stem = _safe(r.name)
        stem = stem if stem not in used else f"{stem}-{len(used)}"  # two names that differ only in odd characters
        used.add(stem)
        figures.append(scatter(result, r.name, out / f"scatter-{stem}.png", color_by=color_by))
    return figures


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_.")[:120] or "measure"


def _level(value: object) -> str:
    return "/".join(map(str, value)) if isinstance(value, tuple) else str(value)


def _nan(value: float | None) -> float:
    return math.nan if value is None else value


def _fmt(value: float, fmt: str = "{:+.3f}") -> str:
    return fmt.format(value) if math.isfinite(value) else "—"
