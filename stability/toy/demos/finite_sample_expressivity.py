"""Demo of Zhang et al.'s Theorem 1: a depth-2 ReLU net that fits random labels exactly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from stability.toy import catalog
from stability.toy.demos.runs import F64, generator, report
from stability.toy.expressivity import fit_finite_sample, relu_features
from stability.toy.twins import torch_twin


def run(out: Path, seed: int) -> dict[str, Any]:
    """Theorem 1: the construction on n = 12 points in R² with random ±1 labels (figure) and on n = 200,
    d = 50 with Gaussian labels; weight count, fit error against the rounding bound, the autodiff twin."""
    from stability.toy import plots

    g = generator(seed)
    n, d = 12, 2
    X = torch.randn(n, d, generator=g, dtype=F64)
    y = torch.randint(0, 2, (n,), generator=g).to(F64) * 2 - 1
    fit = fit_finite_sample(X, y, generator=g)
    tw = torch_twin(catalog.finite_sample_network(X, y))
    theta = torch.cat([fit.a, fit.b, fit.w])
    Xl = torch.randn(200, 50, generator=g, dtype=F64)
    yl = torch.randn(200, generator=g, dtype=F64)
    big = fit_finite_sample(Xl, yl, generator=g)
    A = fit.design
    derived = {
        "num_weights": 2 * n + d, "n": n, "d": d,
        "design": "A_ij = max(z_i - b_j, 0): lower-triangular, positive diagonal, det = prod(z_i - b_i)",
    }  # fmt: skip
    measured = {
        "num_weights": fit.num_weights,
        "max_fit_error": fit.max_fit_error,
        "rounding_bound": fit.error_bound,
        "twin_loss_at_fit": tw.loss(theta),
        "upper_triangle_max": torch.triu(A, 1).abs().max(),
        "min_diagonal": torch.diagonal(A).min(),
        "large": {"n": 200, "d": 50, "num_weights": big.num_weights, "max_fit_error": big.max_fit_error,
                  "rounding_bound": big.error_bound},
    }
    agreement = {
        "num_weights_is_2n_plus_d": fit.num_weights == 2 * n + d and big.num_weights == 2 * 200 + 50,
        # exact up to rounding: within 10x of the n·ε·max(|A||w|) bound of a backward-stable solve
        "fits_exactly": fit.max_fit_error <= 10 * fit.error_bound and big.max_fit_error <= 10 * big.error_bound,
        "twin_agrees": float(tw.loss(theta)) < 1e-20,
        "design_lower_triangular": float(torch.triu(A, 1).abs().max()) == 0.0 and float(torch.diagonal(A).min()) > 0,
    }

    fig, ax = plots.new_figure(1, 2, size=(5.0, 3.8))
    lo, hi = float(fit.z.min()), float(fit.z.max())
    z = torch.linspace(lo - 0.1 * (hi - lo), hi + 0.1 * (hi - lo), 800, dtype=F64)
    ax[0].plot(z.numpy(), (relu_features(z, fit.b) @ fit.w).numpy(), "k", lw=1, label="c(x) along ⟨a, x⟩")
    ax[0].scatter(fit.z.numpy(), y.numpy(), c=y.numpy(), cmap="coolwarm", zorder=3, label="random labels ±1")
    for b in fit.b.numpy():
        ax[0].axvline(b, color="tab:gray", lw=0.4, ls=":")
    ax[0].set(xlabel="z = ⟨a, x⟩ (dotted: biases b_j)", ylabel="output", ylim=(-6, 6),
              title=f"n = {n}, d = {d}: {fit.num_weights} weights")  # fmt: skip
    ax[0].legend(fontsize=7)
    grid = np.linspace(-3, 3, 241)
    G1, G2 = torch.meshgrid(torch.tensor(grid), torch.tensor(grid), indexing="xy")
    C = fit(torch.stack([G1, G2], -1).reshape(-1, 2)).reshape(G1.shape).numpy()
    im = ax[1].pcolormesh(grid, grid, C, cmap="coolwarm", vmin=-3, vmax=3, shading="auto")
    ax[1].scatter(X[:, 0].numpy(), X[:, 1].numpy(), c=y.numpy(), cmap="coolwarm", edgecolors="k", vmin=-1, vmax=1)
    fig.colorbar(im, ax=ax[1], shrink=0.8, extend="both")
    ax[1].set(xlabel="x1", ylabel="x2", aspect="equal", title="the fitted network over the input plane")
    figures = [plots.save(fig, out, "finite-sample-expressivity.png")]
    return report(derived, measured, agreement, figures)
