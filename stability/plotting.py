"""Plotting shared by the analysis and the experiment scripts: Agg backend, atomic PNG files."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from stability.files import atomic_write  # noqa: E402


def save_png(fig: plt.Figure, path: Path) -> Path:
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
    return save_png(fig, path)
