"""Figures of an analysis: where trained models are sensitive to their inputs, train vs test.

Matplotlib with the Agg backend (files only, no display); every function writes one PNG and returns its path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .analysis import MEASURES, Analysis  # noqa: E402
from .checkpoint import atomic_write  # noqa: E402
from .curvature_report import CurvatureAnalysis  # noqa: E402

COLORS = {"train": "tab:blue", "test": "tab:orange"}


def jacobian_histogram(analysis: Analysis, path: Path, *, title: str = "", measure: str = "jacobian_frobenius") -> Path:
    """Histograms of per-sample ``measure`` on train and test, on shared log-spaced bins."""
    values = {name: s.per_sample[measure].double().numpy() for name, s in analysis.splits.items()}
    positive = np.concatenate([v[v > 0] for v in values.values()])
    fig, ax = plt.subplots(figsize=(6, 4))
    if positive.size:
        bins = np.geomspace(positive.min(), positive.max() * 1.0001, 40)
        for name, v in values.items():
            ax.hist(v[v > 0], bins=bins, alpha=0.55, label=f"{name} (mean {v.mean():.3g})", color=COLORS.get(name))
        ax.set_xscale("log")
    ax.set_xlabel(MEASURES[measure][1])
    ax.set_ylabel("samples")
    ax.set_title(title or MEASURES[measure][0])
    ax.legend()
    return _save(fig, path)


def sensitivity_vs_loss(analysis: Analysis, path: Path, *, title: str = "", measure: str = "jacobian_frobenius") -> Path:
    """Per-sample ``measure`` against per-sample loss, train and test, misclassified samples hollow."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, s in analysis.splits.items():
        loss = s.per_sample["loss"].double().numpy()
        value = s.per_sample[measure].double().numpy()
        right = s.per_sample["correct"].numpy() > 0.5
        color = COLORS.get(name)
        ax.scatter(loss[right], value[right], s=8, alpha=0.6, color=color, label=f"{name}, correct")
        ax.scatter(loss[~right], value[~right], s=10, alpha=0.6, facecolors="none", edgecolors=color,
                   label=f"{name}, wrong")  # fmt: skip
    ax.set_xscale("symlog", linthresh=1e-3)
    ax.set_yscale("log")
    ax.set_xlabel(f"per-sample loss ({analysis.loss_name})")
    ax.set_ylabel(MEASURES[measure][0])
    ax.set_title(title or f"{MEASURES[measure][0]} vs loss")
    ax.legend(fontsize=7)
    return _save(fig, path)


def analysis_figures(analysis: Analysis, out_dir: str | Path, *, prefix: str = "", title: str = "") -> list[Path]:
    """All figures of one analysis into ``out_dir``; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{prefix}-" if prefix else ""
    return [
        jacobian_histogram(analysis, out / f"{stem}jacobian_hist.png", title=title),
        jacobian_histogram(analysis, out / f"{stem}jacobian_softmax_hist.png", title=title,
                           measure="jacobian_frobenius_softmax"),  # fmt: skip
        sensitivity_vs_loss(analysis, out / f"{stem}sensitivity_vs_loss.png", title=title),
    ]


def _save(fig: plt.Figure, path: Path) -> Path:
    """Write the figure as a PNG atomically (a sweep interrupted mid-write leaves the old file whole)."""
    fig.tight_layout()
    atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=120))
    plt.close(fig)
    return path


@dataclass(frozen=True)
class Panel:
    """One axes of a :func:`curves` figure: named ``(x, y)`` series, optional reference lines.

    ``hlines`` maps a label to a y value (e.g. ``2/η`` or chance); ``styles`` maps a series label to
    matplotlib keyword arguments (e.g. ``{"linestyle": "--"}``).
    """

    series: Mapping[str, tuple[Sequence[float], Sequence[float]]]
    title: str = ""
    xlabel: str = "epoch"
    ylabel: str = ""
    logx: bool = False
    logy: bool = False
    hlines: Mapping[str, float] = field(default_factory=dict)
    styles: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    marker: str | None = None


def curves(panels: Sequence[Panel], path: str | Path, *, title: str = "", ncols: int | None = None) -> Path:
    """Panels side by side (wrapping after ``ncols``), each with its own series and reference lines."""
    ncols = ncols or len(panels)
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.6 * nrows), squeeze=False)
    for ax, panel in zip(axes.flat, panels):
        for label, (x, y) in panel.series.items():
            ax.plot(x, y, label=label, marker=panel.marker, markersize=4, **panel.styles.get(label, {}))
        for i, (label, y) in enumerate(panel.hlines.items()):
            ax.axhline(y, color="0.35", linestyle=(":", "--", "-.")[i % 3], linewidth=1, label=label)
        ax.set_xscale("log" if panel.logx else "linear")
        ax.set_yscale("log" if panel.logy else "linear")
        ax.set_title(panel.title, fontsize=10)
        ax.set_xlabel(panel.xlabel)
        ax.set_ylabel(panel.ylabel)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return _save(fig, path)


def curvature_figures(curv: "CurvatureAnalysis", out_dir: str | Path, *, prefix: str = "", title: str = "") -> list[Path]:
    """The Hessian's spectral density (stochastic Lanczos quadrature) and its top eigenvalues against 2/η."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{prefix}-" if prefix else ""
    nodes = curv.density.nodes[curv.density.weights > 0]
    lo, hi = float(nodes.min()), float(nodes.max())
    pad = 0.05 * (hi - lo or 1.0)
    import torch

    grid = torch.linspace(lo - pad, hi + pad, 400, dtype=torch.float64)
    dens = curv.density.density(grid, sigma=max((hi - lo) / 100, 1e-12))
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.semilogy(grid.numpy(), dens.clamp_min(1e-12).numpy())
    ax.set_xlabel("Hessian eigenvalue")
    ax.set_ylabel("density (smoothed)")
    ax.set_title(title or "spectral density")
    paths = [_save(fig, out / f"{stem}spectral_density.png")]
    fig, ax = plt.subplots(figsize=(6, 4))
    eig = curv.eigenvalues.double().numpy()
    ax.scatter(np.arange(1, len(eig) + 1), eig, label="top eigenvalues of H")
    ax.axhline(2 / curv.lr, color="tab:red", linestyle="--", label=f"2/η = {2 / curv.lr:.3g}")
    ax.set_yscale("log")
    ax.set_xlabel("rank")
    ax.set_ylabel("eigenvalue")
    ax.set_title(title or "sharpness vs 2/η")
    ax.legend()
    paths.append(_save(fig, out / f"{stem}eigenvalues_vs_lr.png"))
    return paths
