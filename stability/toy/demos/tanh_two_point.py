"""Demo of T4, one tanh unit on (−1, −1), (1, 1) (docs/theory.md §4)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import sympy as sp
import torch
from torch.func import vmap

from stability.toy import catalog, facts
from stability.toy.demos.runs import F64, TOL, _grid_runs, _per_eta, generator, report
from stability.toy.gd import gradient_descent, sharpness
from stability.toy.twins import torch_twin


def run(out: Path, seed: int) -> dict[str, Any]:
    """T4: 40 random starts × six η around 1 + √2, 1500 steps; where runs end on λ(w), which η still
    converge, the branch and slope formulas at the end points."""
    from stability.toy import plots

    tw = torch_twin(catalog.tanh_two_point())
    T4 = facts.TANH_TWO_POINT
    lam = sp.lambdify(facts.W, T4["sharpness"], "numpy")
    etas = [0.5, 1.5, 2.2, 2.35, 2.45, 2.6]
    g = generator(seed)
    S = 40
    box = torch.tensor([2.5, 2.5, 0.3], dtype=F64)  # a, w in (−2.5, 2.5); b in (−0.3, 0.3)
    starts = (2 * torch.rand(S, 3, generator=g, dtype=F64) - 1) * box
    starts[: S // 2, 2] = 0.0  # half the runs start (and stay) in the symmetric plane b = 0
    theta0, lr = _grid_runs(etas, starts)
    run = gradient_descent(tw.loss, theta0, lr, 1500)
    conv = run.converged(step_tol=1e-9, loss_tol=1e-16)
    sharp = sharpness(tw.loss, run.final)
    fa, fw, fb = run.final[conv].unbind(-1)
    branch_err = ((fa - 1 / torch.tanh(fw)).abs() + fb.abs()).max() if conv.any() else torch.tensor(0.0)
    formula_err = (sharp[conv] - torch.as_tensor(lam(fw.numpy()))).abs().max() if conv.any() else torch.tensor(0.0)
    slopes = vmap(tw.input_gradient, in_dims=(0, None))
    s1 = slopes(run.final[conv], torch.ones(1, dtype=F64))[:, 0]
    s0 = slopes(run.final[conv], torch.zeros(1, dtype=F64))[:, 0]
    slope_err = torch.cat([(s1 - 2 * fw / torch.sinh(2 * fw)).abs(), (s0 - fw / torch.tanh(fw)).abs()]).max()

    per_eta = _per_eta(etas, lr, conv)
    ok_etas = [e for e in etas if per_eta[f"{e:g}"] > 0]
    max_ok = max(ok_etas) if ok_etas else None
    none_above = min((e for e in etas if max_ok is not None and e > max_ok), default=None)
    i_min = int(torch.argmin(torch.where(conv, sharp, torch.inf)))
    derived = {
        "loss": "L = (1/2) * sum_i (1/2) (f(x_i) - y_i)**2: the mean over the two points of half the squared "
                "error; a sum instead of the mean doubles every eigenvalue (lambda = 4u + 2/u - 4)",
        "fixed_branch": "(a, w, b) = (coth w, w, 0), w != 0",
        "min_sharpness": T4["min_sharpness"], "argmin_w": T4["argmin_w"], "max_stable_lr": T4["max_stable_lr"],
    }  # fmt: skip
    measured = {
        "learning_rates": etas,
        "converged_per_lr": per_eta,
        "max_lr_converged": max_ok,
        "min_lr_none_converged_above": none_above,
        "min_sharpness_converged": sharp[i_min],
        "w_at_min_sharpness": run.final[i_min, 1].abs(),
        "branch_max_error": branch_err,
        "sharpness_formula_max_error": formula_err,
        "slope_formulas_max_error": slope_err,
    }
    agreement = {
        "converged_runs_are_stable": bool((lr[conv] * sharp[conv] <= 2 + TOL).all()),
        "no_converged_point_flatter_than_min": bool((sharp[conv] >= float(T4["min_sharpness"]) - TOL).all()),
        "max_stable_lr_bracketed": max_ok is not None and none_above is not None
        and max_ok < float(T4["max_stable_lr"]) < none_above,
        # b is pinned only through the residuals (loss ≤ 1e-16 at convergence), hence the looser 1e-6
        "ends_on_fixed_branch": float(branch_err) < 1e-6,
        "sharpness_formula": float(formula_err) < 1e-7,
        "slope_formulas": float(slope_err) < 1e-7,
    }

    fig, ax = plots.new_figure(2, 2)
    ws = np.linspace(-3, 3, 241)
    W_, A_ = torch.meshgrid(torch.tensor(ws), torch.tensor(ws), indexing="xy")
    grid = torch.stack([A_, W_, torch.zeros_like(W_)], -1).reshape(-1, 3)
    plots.landscape(ax[0], ws, ws, vmap(tw.loss)(grid).reshape(W_.shape).numpy())
    eta_show = 2.2
    for sgn in (1, -1):
        w = np.linspace(0.25, 3, 300) * sgn
        ax[0].plot(w, 1 / np.tanh(w), color="tab:red", lw=1, label="fixed branch a = coth w" if sgn > 0 else None)
        st = w[lam(w) < 2 / eta_show]
        label = f"stable part, η={eta_show:g}" if sgn > 0 else None
        ax[0].plot(st, 1 / np.tanh(st), color="tab:green", lw=3, label=label)
    for k in torch.nonzero((lr == eta_show) & (theta0[:, 2] == 0)).ravel()[:12].tolist():
        p = run.thetas[:, k].numpy()
        ax[0].plot(p[:, 1], p[:, 0], lw=0.6, color="tab:blue")
        ax[0].plot(p[-1, 1], p[-1, 0], "o" if conv[k] else "x", color="tab:blue", ms=4)
    ax[0].set(xlim=(-3, 3), ylim=(-3, 3), xlabel="w", ylabel="a", title=f"GD paths in b = 0, η={eta_show:g}")
    ax[0].legend(fontsize=7, loc="lower right")
    w = np.linspace(0.45, 3, 300)
    ax[1].plot(w, lam(w), "k", lw=1, label="λ(w) = 2u + 1/u − 2")
    colors = plots.eta_colors(etas)
    for e in etas:
        m = (lr == e) & conv
        if m.any():
            ax[1].scatter(run.final[m, 1].abs().numpy(), sharp[m].numpy(), s=10, color=colors[e], zorder=3)
        ax[1].axhline(2 / e, ls="--", lw=0.8, color=colors[e], label=f"2/η, η={e:g}")
    ax[1].set(xlabel="|w| at the end point", ylabel="sharpness", ylim=(0, 4.5), title="where converged runs end")
    ax[1].legend(fontsize=6, ncol=2)
    eta_edge = 2.35
    idx = torch.nonzero((lr == eta_edge) & conv).ravel()[:6]
    ax[2].plot(sharpness(tw.loss, run.thetas[:150, idx]).numpy(), lw=1)
    plots.mark_lr_threshold(ax[2], eta_edge, "k")
    ax[2].axhline(float(T4["min_sharpness"]), color="tab:red", lw=1, label="2√2 − 2")
    ax[2].set(xlabel="step", ylabel="sharpness", ylim=(0, 3), title=f"sharpness along paths, η={eta_edge:g}")
    ax[2].legend(fontsize=7)
    ax[3].plot(w, 2 * w / np.sinh(2 * w), label="f′(±1) = 2w / sinh 2w (at the data)")
    ax[3].plot(w, w / np.tanh(w), label="f′(0) = w coth w (between the data)")
    ax[3].axvline(float(T4["argmin_w"]), color="tab:green", ls=":", label="flattest minimum")
    ax[3].set(xlabel="w on the fixed branch", ylabel="input slope", title="input sensitivity along the branch")
    ax[3].legend(fontsize=7)
    figures = [plots.save(fig, out, "tanh-two-point.png")]
    shown = ("sharpness", "min_sharpness", "argmin_w", "max_stable_lr", "slope_at_data", "slope_at_zero")
    formulas = {k: T4[k] for k in shown}
    return report(derived, measured, agreement, figures, formulas)
