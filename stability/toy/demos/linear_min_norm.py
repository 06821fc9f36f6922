"""Demo of T2, linear regression with d > n: GD ends at the min-norm interpolant."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.func import vmap

from stability.toy import catalog, facts
from stability.toy.demos.gradient_splitting import plots_circle
from stability.toy.demos.runs import F64, generator, report
from stability.toy.gd import gradient_descent
from stability.toy.twins import torch_twin


def run(out: Path, seed: int) -> dict[str, Any]:
    """T2: n = 10, d = 40 Gaussian data, GD at η = 1/λ_max from 0 and five random starts (600 steps) against
    w* + (I − X⁺X) w0; plus a d = 2, n = 1 picture."""
    from stability.toy import plots

    g = generator(seed)
    n, d = 10, 40
    X = torch.randn(n, d, generator=g, dtype=F64) / math.sqrt(d)
    y = torch.randn(n, generator=g, dtype=F64)
    tw = torch_twin(catalog.linear_regression(X, y))
    lam = torch.linalg.eigvalsh(X.T @ X / n)
    eta = 1 / float(lam[-1])
    w0 = torch.cat([torch.zeros(1, d, dtype=F64), torch.randn(5, d, generator=g, dtype=F64)])
    run = gradient_descent(tw.loss, w0, eta, 600)
    w_star = facts.min_norm_interpolant(X, y)
    limits = facts.linear_gd_limit(X, y, w0)
    sharp = torch.linalg.eigvalsh(vmap(tw.hessian)(run.final))[:, -1]
    dist_zero = (run.final[0] - w_star).norm()
    dist_pred = (run.final - limits).norm(dim=1).max()
    norms = run.final.norm(dim=1)
    derived = {
        "min_norm_interpolant": "w* = X^T (X X^T)^-1 y",
        "limit_from_w0": "w* + (I - X^+ X) w0",
        "sharpness_at_every_interpolant": lam[-1],
        "min_norm": w_star.norm(),
        "n": n, "d": d, "learning_rate": eta,
    }  # fmt: skip
    measured = {
        "distance_from_min_norm_init_zero": dist_zero,
        "max_distance_from_predicted_limit": dist_pred,
        "limit_norms": norms,
        "final_residual_max": (run.final @ X.T - y).abs().max(),
        "sharpness_spread_across_limits": sharp.max() - sharp.min(),
    }
    agreement = {
        "zero_init_reaches_min_norm": float(dist_zero) < 1e-9,
        "limits_match_prediction": float(dist_pred) < 1e-9,
        "min_norm_is_least_input_sensitive": bool((norms >= w_star.norm() - 1e-9).all()),
        "stability_is_uniform": float(sharp.max() - sharp.min()) < 1e-12,
    }

    fig, ax = plots.new_figure(1, 3)
    x2 = torch.tensor([[1.0, 0.5]], dtype=F64)
    tw2 = torch_twin(catalog.linear_regression(x2, [1.0]))
    ang = torch.linspace(0, 2 * math.pi, 11, dtype=F64)[:-1]
    starts = torch.cat([torch.zeros(1, 2, dtype=F64), 1.8 * torch.stack([ang.cos(), ang.sin()], 1)])
    run2 = gradient_descent(tw2.loss, starts, 1 / float(x2.pow(2).sum()), 40)
    grid = np.linspace(-2.2, 2.2, 161)
    G1, G2 = torch.meshgrid(torch.tensor(grid), torch.tensor(grid), indexing="xy")
    values = vmap(tw2.loss)(torch.stack([G1, G2], -1).reshape(-1, 2)).reshape(G1.shape)
    plots.landscape(ax[0], grid, grid, values.numpy())
    t = np.linspace(-2.2, 2.2, 10)
    ax[0].plot(t, (1 - t) / 0.5, "tab:red", lw=1, label="interpolants (fixed set)")
    for r in (0.5, 1.0, 1.5, 2.0):
        ax[0].add_patch(plots_circle(r))
    for k in range(starts.shape[0]):
        p = run2.thetas[:, k].numpy()
        ax[0].plot(p[:, 0], p[:, 1], lw=1.5 if k == 0 else 0.7, color="tab:orange" if k == 0 else "tab:blue")
    ws = facts.min_norm_interpolant(x2, torch.tensor([1.0], dtype=F64)).numpy()
    ax[0].plot(*ws, "k*", ms=10, label="min-norm (from 0)")
    ax[0].set(xlim=(-2.2, 2.2), ylim=(-2.2, 2.2), aspect="equal", xlabel="w1", ylabel="w2",
              title="d = 2, n = 1: GD keeps the null-space part")  # fmt: skip
    ax[0].legend(fontsize=7, loc="lower left")
    dist = (run.thetas - limits[None]).norm(dim=-1).clamp_min(1e-17).numpy()
    for k in range(w0.shape[0]):
        ax[1].plot(dist[:, k], lw=1.5 if k == 0 else 0.8, label="w0 = 0" if k == 0 else None)
    ax[1].set(yscale="log", xlabel="step", ylabel="‖w_t − predicted limit‖", title=f"n = {n}, d = {d}, η = 1/λ_max")
    ax[1].legend(fontsize=7)
    ax[2].bar(range(len(norms)), norms.numpy(), color=["tab:orange"] + ["tab:blue"] * (len(norms) - 1))
    ax[2].axhline(float(w_star.norm()), color="k", ls="--", lw=1, label="‖w*‖ (min-norm)")
    ax[2].set(xlabel="run (0: w0 = 0)", ylabel="‖∇_x f‖ = ‖w‖ at the limit", title="input sensitivity of the limits")
    ax[2].legend(fontsize=7)
    figures = [plots.save(fig, out, "linear-min-norm.png")]
    return report(derived, measured, agreement, figures)
