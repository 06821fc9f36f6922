"""Figure plumbing for the toy demos: Agg-rendered figures written as PNG, no global pyplot state.

Figures are ``matplotlib.figure.Figure`` objects attached to an Agg canvas, so rendering needs no display,
never switches the backend of a session that imports the toolkit, and leaves no figure registered in
pyplot. Imported only when a demo draws.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

DPI = 110


def new_figure(nrows: int, ncols: int, *, size: tuple[float, float] = (4.2, 3.6)) -> tuple[Figure, np.ndarray]:
    """A figure with an ``nrows × ncols`` grid of axes, each ``size`` inches, on an Agg canvas."""
    fig = Figure(figsize=(size[0] * ncols, size[1] * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    return fig, axes


def save(fig: Figure, out_dir: str | Path, name: str) -> str:
    """Write ``fig`` to ``out_dir/name`` (PNG) atomically; return ``name`` (the path relative to ``out_dir``)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{name}.tmp"
    fig.savefig(tmp, dpi=DPI, format="png")
    tmp.replace(out / name)
    return name


def eta_colors(etas: Sequence[float]) -> dict[float, tuple[float, float, float, float]]:
    """One colour per learning rate, ordered along a perceptual colormap."""
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    n = max(len(etas) - 1, 1)
    return {float(e): cmap(0.9 * i / n) for i, e in enumerate(sorted(etas))}


def landscape(ax: Axes, xs: np.ndarray, ys: np.ndarray, values: np.ndarray, *, levels: int = 30) -> None:
    """Filled contours of ``log10(values + 1e-12)`` on the grid ``xs × ys`` (``values: (len(ys), len(xs))``)."""
    ax.contourf(xs, ys, np.log10(values + 1e-12), levels=levels, cmap="Greys_r", alpha=0.55)


def mark_lr_threshold(ax: Axes, eta: float, color: object, *, label: bool = True) -> None:
    """A dashed horizontal line at ``2/η`` (the GD stability threshold on sharpness)."""
    ax.axhline(2.0 / eta, ls="--", lw=1, color=color, label=f"2/η, η={eta:g}" if label else None)
