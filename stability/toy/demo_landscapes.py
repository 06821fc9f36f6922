"""Demos on small networks with a manifold of minima: T1 (two-layer scalar), T3 (diagonal net), T4 (tanh).

Each runs full-batch GD from seeded random starts at several learning rates, reads off where the runs end
and how sharp the end points are, and sets that against the closed forms of :mod:`stability.toy.facts`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import sympy as sp
import torch
from torch.func import vmap

from . import catalog, facts
from .demos import generator, report
from .gd import gradient_descent, sharpness
from .twins import TorchTwin, torch_twin

F64 = torch.float64
TOL = 1e-9  # slack for float64 round-off in "≤ 2/η"-type checks on converged runs


def _grid_runs(etas: list[float], starts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Every start at every learning rate: ``theta0 (len(etas)·S, P)``, ``lr (len(etas)·S,)``."""
    lr = torch.tensor(etas, dtype=F64).repeat_interleave(starts.shape[0])
    return starts.repeat(len(etas), 1), lr


def _per_eta(etas: list[float], lr: torch.Tensor, conv: torch.Tensor) -> dict[str, int]:
    return {f"{e:g}": int(conv[lr == e].sum()) for e in etas}


def _input_jacobians(tw: TorchTwin, thetas: torch.Tensor, lrs: torch.Tensor) -> torch.Tensor:
    """``∂G/∂x_i`` at each of ``thetas: (S, P)`` with its own learning rate: ``(S, n, P, D)``."""
    return vmap(tw.gd_input_jacobian)(thetas, lrs)


def two_layer_scalar_demo(out: Path, seed: int) -> dict[str, Any]:
    """T1, x0 = y0 = 1: 48 random starts × η ∈ {0.25, 0.5, 0.9, 1.05}, 600 steps; stability threshold,
    imbalance law at every step, ‖∂G/∂x0‖² at the end points."""
    from . import plots

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


def tanh_two_point_demo(out: Path, seed: int) -> dict[str, Any]:
    """T4: 40 random starts × six η around 1 + √2, 1500 steps; where runs end on λ(w), which η still
    converge, the branch and slope formulas at the end points."""
    from . import plots

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


def diagonal_net_demo(out: Path, seed: int) -> dict[str, Any]:
    """T3 on x = (1, 0.5), y = 1: 40 small random starts × six η up to 2.2, 2500 steps; sharpness against
    2 Σ x_k²|β_k|, the weighted norm against 1/η, and the raw norm ‖β‖ at the end points."""
    from . import plots

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
