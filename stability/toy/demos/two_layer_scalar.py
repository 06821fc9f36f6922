"""Demo of T1, f = a·b·x on one point (docs/theory.md §4)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.func import vmap

from stability.toy import catalog, facts
from stability.toy.demos.runs import F64, TOL, _grid_runs, _input_jacobians, _per_eta, generator, report
from stability.toy.gd import gradient_descent, sharpness
from stability.toy.twins import torch_twin


def run(out: Path, seed: int) -> dict[str, Any]:
    """T1, x0 = y0 = 1: 48 random starts × η ∈ {0.25, 0.5, 0.9, 1.05}, 600 steps; stability threshold,
    imbalance law at every step, ‖∂G/∂x0‖² at the end points."""
    from stability.toy import plots

    x0, y0 = 1.0, 1.0
    tw = torch_twin(catalog.two_layer_scalar(x0, y0))
    etas = [0.25, 0.5, 0.9, 1.05]
    starts = torch.rand(48, 2, generator=generator(seed), dtype=F64) * 4.4 - 2.2
    theta0, lr = _grid_runs(etas, starts)
    run = gradient_descent(tw.loss, theta0, lr, 600)
    conv = run.converged(step_tol=1e-10, loss_tol=1e-18)
    sharp = sharpness(tw.loss, run.final)

    subs = {facts.X0: x0, facts.Y0: y0}
    T1 = facts.TWO_LAYER_SCALAR
    max_lr = float(T1["max_stable_lr"].subs(subs))
    # imbalance law at every step of every bounded run: (a'² − b'²) = (a² − b²)(1 − η² x0² r²)
    a, b = run.thetas[..., 0], run.thetas[..., 1]
    imb = a**2 - b**2
    r = a * b * x0 - y0
    predicted = imb[:-1] * (1 - lr**2 * x0**2 * r[:-1] ** 2)
    keep = ~run.diverged
    law_err = ((imb[1:] - predicted).abs() / (1 + imb[1:].abs() + predicted.abs()))[:, keep].max()
    # ‖∂G/∂x0‖² at the converged points against η² x0² c² (a² + b²)
    fa, fb = run.final[conv, 0], run.final[conv, 1]
    jac = _input_jacobians(tw, run.final[conv], lr[conv])
    jac_formula = lr[conv] ** 2 * x0**2 * (y0 / x0) ** 2 * (fa**2 + fb**2)
    jac_err = ((jac.pow(2).sum((1, 2, 3)) - jac_formula).abs() / jac_formula).max() if conv.any() else torch.tensor(0.0)
    margin = 2 - lr[conv] * sharp[conv]
    beyond = lr > max_lr

    derived = {
        "stability_condition": "eta * x0**2 * (a**2 + b**2) < 2",
        "x0": x0, "y0": y0,
        "min_sharpness": T1["min_sharpness"].subs(subs),
        "max_stable_lr": max_lr,
        "balanced_point": [T1["balanced_a"].subs(subs), T1["balanced_b"].subs(subs)],
        "residual": "r = a*b*x0 - y0 (before the step)",
    }  # fmt: skip
    measured = {
        "learning_rates": etas,
        "converged_per_lr": _per_eta(etas, lr, conv),
        "max_eta_times_sharpness_converged": (lr[conv] * sharp[conv]).max() if conv.any() else None,
        "min_sharpness_converged": sharp[conv].min() if conv.any() else None,
        "converged_beyond_max_stable_lr": int(conv[beyond].sum()),
        "imbalance_law_max_rel_error": law_err,
        "input_jacobian_sq_max_rel_error": jac_err,
    }
    agreement = {
        "converged_runs_are_stable": bool((margin >= -TOL).all()),
        "sharpness_at_least_min": bool((sharp[conv] >= float(derived["min_sharpness"]) - TOL).all()),
        "none_converge_beyond_max_stable_lr": measured["converged_beyond_max_stable_lr"] == 0,
        "some_converge_below": bool(conv[~beyond].any()),
        "imbalance_law": float(law_err) < 1e-12,
        # the closed form holds at exact interpolation; converged runs have |r| ≤ 1e-9, which bounds the error
        "input_jacobian_formula": float(jac_err) < 1e-8,
    }

    fig, ax = plots.new_figure(1, 3)
    grid = np.linspace(-2.5, 2.5, 201)
    A, B = torch.meshgrid(torch.tensor(grid), torch.tensor(grid), indexing="xy")
    plots.landscape(ax[0], grid, grid, vmap(tw.loss)(torch.stack([A, B], -1).reshape(-1, 2)).reshape(A.shape).numpy())
    eta_show = 0.5
    for sgn in (1, -1):
        s = np.linspace(0.35, 2.5, 200) * sgn
        ax[0].plot(s, y0 / (x0 * s), color="tab:red", lw=1, label="fixed set ab = y0/x0" if sgn > 0 else None)
        st = s[s**2 + (y0 / (x0 * s)) ** 2 < 2 / (eta_show * x0**2)]
        label = f"stable part, η={eta_show:g}" if sgn > 0 else None
        ax[0].plot(st, y0 / (x0 * st), color="tab:green", lw=3, label=label)
    sel = torch.nonzero(lr == eta_show).ravel()[:14]
    for k in sel.tolist():
        path = run.thetas[:, k].numpy()
        ax[0].plot(path[:, 0], path[:, 1], lw=0.7, color="tab:blue")
        ax[0].plot(*path[-1], "o" if conv[k] else "x", color="tab:blue", ms=4)
    ax[0].set(xlim=(-2.5, 2.5), ylim=(-2.5, 2.5), xlabel="a", ylabel="b", title=f"GD paths, η={eta_show:g} (log loss)")
    ax[0].legend(fontsize=7, loc="lower left")
    eta_edge = 0.9
    idx = torch.nonzero((lr == eta_edge) & conv).ravel()
    idx = idx[torch.argsort(-(starts[idx % starts.shape[0]] ** 2).sum(1))][:6]
    path_sharp = sharpness(tw.loss, run.thetas[:150, idx])
    ax[1].plot(path_sharp.numpy(), lw=1)
    plots.mark_lr_threshold(ax[1], eta_edge, "k")
    ax[1].set(xlabel="step", ylabel="sharpness λ_max(H)", title=f"sharpness along paths, η={eta_edge:g}",
              yscale="log")  # fmt: skip
    ax[1].legend(fontsize=7)
    colors = plots.eta_colors(etas)
    for e in etas:
        m = (lr == e) & conv
        ax[2].scatter(np.full(int(m.sum()), e), sharp[m].numpy(), s=9, color=colors[e])
    es = np.linspace(0.2, 1.1, 100)
    ax[2].plot(es, 2 / es, "k--", lw=1, label="2/η")
    ax[2].axhline(float(derived["min_sharpness"]), color="tab:red", lw=1, label="min sharpness 2|x0 y0|")
    ax[2].axvline(max_lr, color="tab:gray", ls=":", label="η = 1/|x0 y0|")
    ax[2].set(xlabel="η", ylabel="sharpness at the end point", title="where converged runs end", ylim=(0, 9))
    ax[2].legend(fontsize=7)
    figures = [plots.save(fig, out, "two-layer-scalar.png")]
    formulas = {k: T1[k] for k in ("min_sharpness", "max_stable_lr", "imbalance_factor", "input_jacobian_sq")}
    return report(derived, measured, agreement, figures, formulas)
