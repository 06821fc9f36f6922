"""Demo of T3, the diagonal linear net f = Σ u_k v_k x_k (docs/theory.md §4)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from stability.toy import catalog, facts
from stability.toy.demos.runs import F64, TOL, _grid_runs, _per_eta, generator, report
from stability.toy.gd import gradient_descent, sharpness
from stability.toy.twins import torch_twin


def run(out: Path, seed: int) -> dict[str, Any]:
    """T3 on x = (1, 0.5), y = 1: 40 small random starts × six η up to 2.2, 2500 steps; sharpness against
    2 Σ x_k²|β_k|, the weighted norm against 1/η, and the raw norm ‖β‖ at the end points."""
    from stability.toy import plots

    x = torch.tensor([1.0, 0.5], dtype=F64)
    y = 1.0
    X = x[None]
    tw = torch_twin(catalog.diagonal_net(X, [y]))
    etas = [0.5, 1.0, 1.3, 1.6, 1.9, 2.2]
    starts = torch.randn(40, 4, generator=generator(seed), dtype=F64) * 0.3
    theta0, lr = _grid_runs(etas, starts)
    run = gradient_descent(tw.loss, theta0, lr, 2500)
    conv = run.converged(step_tol=1e-9, loss_tol=1e-16)
    sharp = sharpness(tw.loss, run.final)
    beta = run.final[:, :2] * run.final[:, 2:]
    bound = facts.diagonal_sharpness_lower_bound(beta, X)  # 2 Σ x_k² |β_k|
    min_sharp = float(facts.diagonal_min_sharpness(x, y))
    beta_star = y * x / x.pow(2).sum()  # least-norm input gradient among interpolants
    weighted = lambda bt: float(facts.diagonal_sharpness_lower_bound(bt, X)) / 2  # noqa: E731
    beyond = lr > 1 / (min_sharp / 2)
    derived = {
        "x": x, "y": y,
        "bound": "sharpness = sum_k x_k**2 (u_k**2 + v_k**2) >= 2 sum_k x_k**2 |beta_k|, beta_k = u_k v_k",
        "stable_implies": "sum_k x_k**2 |beta_k| < 1/eta",
        "min_sharpness": min_sharp,
        "max_stable_lr": 2 / min_sharp,
        "min_norm_beta": beta_star,
        "max_lr_stable_min_norm_beta": 1 / weighted(beta_star),
    }  # fmt: skip
    eta_big = 1.6
    big = (lr == eta_big) & conv
    measured = {
        "learning_rates": etas,
        "converged_per_lr": _per_eta(etas, lr, conv),
        "min_sharpness_minus_bound": (sharp[conv] - bound[conv]).min() if conv.any() else None,
        "max_eta_times_weighted_l1": (lr[conv] * bound[conv] / 2).max() if conv.any() else None,
        "converged_beyond_max_stable_lr": int(conv[beyond].sum()),
        f"max_beta_norm_at_eta_{eta_big:g}": beta[big].norm(dim=1).max() if big.any() else None,
        "min_norm_beta_norm": beta_star.norm(),
    }
    agreement = {
        "sharpness_above_bound": bool((sharp[conv] >= bound[conv] - TOL).all()),
        "weighted_l1_below_one_over_eta": bool((lr[conv] * bound[conv] / 2 <= 1 + TOL).all()),
        "none_converge_beyond_max_stable_lr": measured["converged_beyond_max_stable_lr"] == 0,
        "stable_beta_larger_than_min_norm": bool(big.any()) and float(measured[f"max_beta_norm_at_eta_{eta_big:g}"])
        > float(beta_star.norm()),
    }

    fig, ax = plots.new_figure(1, 3)
    colors = plots.eta_colors(etas)
    b1 = np.linspace(-0.6, 1.6, 10)
    ax[0].plot(b1, (y - x[0].item() * b1) / x[1].item(), "tab:red", lw=1, label="interpolants x·β = y")
    for e in etas:
        c = 1 / e  # |β1| x1² + |β2| x2² = 1/η, the region stability allows
        d1, d2 = c / x[0].item() ** 2, c / x[1].item() ** 2
        ax[0].plot([d1, 0, -d1, 0, d1], [0, d2, 0, -d2, 0], lw=0.8, color=colors[e])
        m = (lr == e) & conv
        ax[0].scatter(beta[m, 0].numpy(), beta[m, 1].numpy(), s=10, color=colors[e], label=f"η={e:g}", zorder=3)
    ax[0].plot(*beta_star.numpy(), "k*", ms=9, label="min-norm β")
    ax[0].set(xlim=(-0.6, 1.6), ylim=(-0.6, 2.6), xlabel="β1", ylabel="β2",
              title="end points; diamonds Σ x_k²|β_k| = 1/η")  # fmt: skip
    ax[0].legend(fontsize=6, ncol=2)
    for e in etas:
        m = (lr == e) & conv
        ax[1].scatter(lr[m].numpy(), bound[m].numpy() / 2, s=10, color=colors[e])
        ax[1].scatter(lr[m].numpy(), beta[m].norm(dim=1).numpy(), s=14, marker="x", color=colors[e])
    es = np.linspace(0.4, 2.3, 100)
    ax[1].plot(es, 1 / es, "k--", lw=1, label="1/η (stability cap on Σ x_k²|β_k|)")
    ax[1].scatter([], [], color="gray", s=10, label="Σ x_k²|β_k| (data-weighted l1)")
    ax[1].scatter([], [], color="gray", marker="x", label="‖β‖ = ‖∇_x f‖ (raw norm)")
    ax[1].set(xlabel="η", ylabel="norm of β at the end point", ylim=(0, 2.6),
              title="stability caps the weighted norm only")  # fmt: skip
    ax[1].legend(fontsize=7)
    idx = torch.nonzero(big).ravel()[:6]
    ax[2].plot(sharpness(tw.loss, run.thetas[:300, idx]).numpy(), lw=1)
    plots.mark_lr_threshold(ax[2], eta_big, "k")
    ax[2].set(xlabel="step", ylabel="sharpness", yscale="log", title=f"sharpness along paths, η={eta_big:g}")
    ax[2].legend(fontsize=7)
    figures = [plots.save(fig, out, "diagonal-net.png")]
    return report(derived, measured, agreement, figures)
