"""Figures of an analysis: where trained models are sensitive to their inputs, train vs test.

Matplotlib with the Agg backend (files only, no display); every function writes one PNG and returns its path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stability.analysis.curvature import CurvatureAnalysis
from stability.analysis.splits import MEASURES, Analysis
from stability.plotting import plt, save_png

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
    return save_png(fig, path)


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
    return save_png(fig, path)


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
    paths = [save_png(fig, out / f"{stem}spectral_density.png")]
    fig, ax = plt.subplots(figsize=(6, 4))
    eig = curv.hessian.top.eigenvalues.detach().cpu().double().numpy()
    setting = curv.linear_stability.setting
    ax.scatter(np.arange(1, len(eig) + 1), eig, label="top eigenvalues of H")
    if not setting.adaptive:  # Adam's threshold bounds P⁻¹H, not H
        ax.axhline(setting.threshold, color="tab:red", linestyle="--",
                   label=f"{setting.kind} threshold {setting.threshold:.3g}")  # fmt: skip
    ax.set_yscale("log")
    ax.set_xlabel("rank")
    ax.set_ylabel("eigenvalue")
    ax.set_title(title or "sharpness vs the optimizer's threshold")
    ax.legend()
    paths.append(save_png(fig, out / f"{stem}eigenvalues_vs_lr.png"))
    return paths
