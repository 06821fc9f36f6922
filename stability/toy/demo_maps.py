"""Demos where the map itself is the point: T2 (linear regression), T5 (gradient splitting), the quartic's
route to chaos, and Zhang et al.'s Theorem 1 construction.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.func import vmap

from . import catalog, facts
from .demos import generator, report
from .expressivity import fit_finite_sample, relu_features
from .gd import gradient_descent
from .twins import torch_twin

F64 = torch.float64


def linear_min_norm_demo(out: Path, seed: int) -> dict[str, Any]:
    """T2: n = 10, d = 40 Gaussian data, GD at η = 1/λ_max from 0 and five random starts (600 steps) against
    w* + (I − X⁺X) w0; plus a d = 2, n = 1 picture."""
    from . import plots

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


def plots_circle(r: float) -> Any:
    from matplotlib.patches import Circle

    return Circle((0, 0), r, fill=False, ls=":", lw=0.7, color="tab:gray")


def gradient_splitting_demo(out: Path, seed: int) -> dict[str, Any]:
    """T5: for α ∈ {10°, 30°, 60°, 90°}, GD on J from 1e-8 off the fit-both saddle (η = 0.1, 300 steps); the
    Hessian spectrum and the fitted escape rate against log(1 + η sin α)."""
    from . import plots

    eta, steps = 0.1, 300
    degrees = [10, 30, 60, 90]
    g = generator(seed)
    rates, eig_err, paths, twins = [], 0.0, [], []
    for deg in degrees:
        al = math.radians(deg)
        model = catalog.gradient_splitting(al, 1.0, 1.0)
        tw = torch_twin(model)
        star = torch.tensor([float(v) for v in model.fixed_set.point], dtype=F64)
        eigs = torch.linalg.eigvalsh(tw.hessian(star))
        eig_err = max(eig_err, float((eigs - torch.tensor([-math.sin(al), math.sin(al)], dtype=F64)).abs().max()))
        u = torch.randn(1, 2, generator=g, dtype=F64)
        run = gradient_descent(tw.loss, star + 1e-8 * u / u.norm(), eta, steps)
        dist = (run.thetas[:, 0] - star).norm(dim=-1)
        t = torch.arange(steps // 2, steps + 1, dtype=F64)
        # slope of log-distance over the second half, once the stable component has died out
        fit = torch.linalg.lstsq(torch.stack([t, torch.ones_like(t)], 1), dist[steps // 2 :].log()[:, None])
        rates.append(float(fit.solution[0, 0]))
        paths.append((run, star, dist))
        twins.append(tw)
    predicted = [math.log(1 + eta * math.sin(math.radians(deg))) for deg in degrees]
    rate_err = max(abs(r - p) / p for r, p in zip(rates, predicted))
    derived = {
        "hessian": "phi1 phi1^T - phi2 phi2^T",
        "eigenvalues": "+-sin(alpha)",
        "escape_rate_per_step": dict(zip(map(str, degrees), predicted)),
        "learning_rate": eta,
    }
    measured = {
        "escape_rate_per_step": dict(zip(map(str, degrees), rates)),
        "eigenvalue_max_error": eig_err,
        "escape_rate_max_rel_error": rate_err,
    }
    agreement = {"eigenvalues_are_plus_minus_sin": eig_err < 1e-12, "escape_rate_matches": rate_err < 1e-3}

    fig, ax = plots.new_figure(1, 3)
    for deg, (run, star, dist), p in zip(degrees, paths, predicted):
        line = ax[0].plot(dist.numpy(), lw=1, label=f"α = {deg}°")[0]
        t = np.arange(steps + 1)
        ax[0].plot(t, float(dist[-1]) * np.exp(p * (t - steps)), ls="--", lw=0.7, color=line.get_color())
    ax[0].set(yscale="log", xlabel="step", ylabel="‖θ_t − θ*‖", title=f"escape from the fit-both saddle, η = {eta:g}")
    ax[0].legend(fontsize=7)
    al = np.linspace(0.01, math.pi / 2, 100)
    ax[1].plot(np.degrees(al), np.log1p(eta * np.sin(al)), "k", lw=1, label="log(1 + η sin α)")
    ax[1].plot(degrees, rates, "o", color="tab:red", label="measured")
    ax[1].set(xlabel="angle α between trained and anti-trained input (°)", ylabel="escape rate per step")
    ax[1].legend(fontsize=7)
    run, star, _ = paths[2]
    tw = twins[2]
    grid = np.linspace(-1.5, 1.5, 121)
    G1, G2 = torch.meshgrid(torch.tensor(grid), torch.tensor(grid), indexing="xy")
    pts = star + torch.stack([G1, G2], -1).reshape(-1, 2)
    J = vmap(tw.loss)(pts).reshape(G1.shape).numpy()
    ax[2].contour(grid, grid, J, levels=25, cmap="RdBu_r", linewidths=0.7)
    p = (run.thetas[:, 0] - star).numpy()
    ax[2].plot(p[:, 0], p[:, 1], color="k", lw=1, label="GD path")
    evals, evecs = torch.linalg.eigh(tw.hessian(star))
    for lam, v in zip(evals.tolist(), evecs.T):
        ax[2].plot([-v[0], v[0]], [-v[1], v[1]], lw=2.5, alpha=0.7, color="tab:red" if lam < 0 else "tab:green",
                   label=f"eigenvector, λ = {lam:+.3f}")  # fmt: skip
    ax[2].set(xlim=(-1.5, 1.5), ylim=(-1.5, 1.5), aspect="equal", xlabel="θ1 − θ1*", ylabel="θ2 − θ2*",
              title="J = L_train − L_heldout, α = 60°")  # fmt: skip
    ax[2].legend(fontsize=7, loc="upper right")
    figures = [plots.save(fig, out, "gradient-splitting.png")]
    formulas = {"escape_multiplier": facts.GRADIENT_SPLITTING["escape_multiplier"]}
    return report(derived, measured, agreement, figures, formulas)


def quartic_demo(out: Path, seed: int) -> dict[str, Any]:
    """Quartic: 600 learning rates in [0.5, 2] from θ0 = 0.5 (3000 steps) for the bifurcation diagram and the
    Lyapunov exponent; one run at η = 1.1 for the 2-cycle, 64 random starts at η = 2 for ln 3."""
    from . import plots

    Q = facts.QUARTIC
    tw = torch_twin(catalog.quartic())
    etas = torch.linspace(0.5, 2.0, 600, dtype=F64)  # avoids the exact bifurcation values
    steps, tail = 3000, 256
    # one batch: the η grid from θ0 = 0.5, one run at η = 1.1 (its 2-cycle), 64 random starts at η = 2
    eta_c, n_grid, n_chaos = 1.1, len(etas), 64
    starts = torch.cat([
        torch.full((n_grid + 1, 1), 0.5, dtype=F64),
        torch.rand(n_chaos, 1, generator=generator(seed), dtype=F64) * 2.6 - 1.3,
    ])  # fmt: skip
    lrs = torch.cat([etas, torch.tensor([eta_c], dtype=F64), torch.full((n_chaos,), 2.0, dtype=F64)])
    everything = gradient_descent(tw.loss, starts, lrs, steps)
    thetas = everything.thetas[..., 0]
    th = thetas[-tail:, :n_grid]
    period = torch.full((n_grid,), 99)
    for p in (8, 4, 2, 1):  # smallest p with θ_T = θ_{T−p}: the period of the attracting orbit
        period = torch.where((th[-1] - th[-1 - p]).abs() < 1e-7, p, period)
    lyap = (1 + etas - 3 * etas * th**2).abs().log().mean(0)
    onset2 = float(etas[period >= 2][0])
    onset4 = float(etas[period >= 4][0])
    cycle = torch.sort(thetas[-2:, n_grid] ** 2).values
    cycle_pred = torch.tensor([float(v) for v in Q["two_cycle_sq"].subs(facts.ETA, eta_c)], dtype=F64)
    ok = ~everything.diverged[n_grid + 1 :]
    # log|G'(θ)| = log|1 + η − 3ηθ²| at η = 2, averaged after a short transient
    per_run = (3 - 6 * thetas[100:, n_grid + 1 :][:, ok] ** 2).abs().log().mean(0)
    l_mean, l_se = float(per_run.mean()), float(per_run.std() / math.sqrt(per_run.numel()))
    spacing = float(etas[1] - etas[0])
    derived = {
        "loss_of_stability_lr": Q["loss_of_stability_lr"],
        "period_four_lr": Q["period_four_lr"],
        "bounded_until_lr": Q["bounded_until_lr"],
        "two_cycle_sq_at_1.1": cycle_pred,
        "lyapunov_at_2": Q["lyapunov_at_2"],
    }
    measured = {
        "period_two_onset": onset2,
        "period_four_onset": onset4,
        "grid_spacing": spacing,
        "two_cycle_sq_at_1.1": cycle,
        "lyapunov_at_2": l_mean,
        "lyapunov_at_2_stderr": l_se,
        "runs_escaped_at_2": int((~ok).sum()),
        "fraction_chaotic_above_1.5": float((lyap[etas > 1.5] > 0).double().mean()),
    }
    # Near a flip bifurcation the approach to the orbit slows (multiplier → −1), so a finite run sees the
    # new period a little early: allow a few grid spacings.
    agreement = {
        "period_two_at_eta_1": abs(onset2 - 1.0) < 4 * spacing,
        "period_four_at_sqrt5_minus_1": abs(onset4 - float(Q["period_four_lr"])) < 4 * spacing,
        "two_cycle_points": float((cycle - cycle_pred).abs().max()) < 1e-9,
        "lyapunov_ln3_at_2": abs(l_mean - math.log(3)) < 4 * l_se + 1e-3,
        "bounded_up_to_2": not bool(everything.diverged[:n_grid].any()),
    }

    fig, ax = plots.new_figure(1, 2, size=(5.2, 3.8))
    e = np.repeat(etas.numpy()[None], tail, 0)
    ax[0].plot(e.ravel(), th.numpy().ravel(), ",", color="k", alpha=0.35)
    es = np.linspace(1.0, float(Q["period_four_lr"]), 100)
    root = np.sqrt((es - 1) * (es + 3))
    for sq in ((es + 1 - root) / (2 * es), (es + 1 + root) / (2 * es)):
        ax[0].plot(es, np.sqrt(sq), "tab:red", lw=0.8)
    for v, lab in ((1.0, "η = 1"), (float(Q["period_four_lr"]), "√5 − 1"), (2.0, "η = 2")):
        ax[0].axvline(v, ls=":", lw=0.8, color="tab:blue")
        ax[0].text(v, 1.55, lab, fontsize=7, ha="center")
    ax[0].set(xlabel="η", ylabel=f"θ (last {tail} of {steps} steps)", ylim=(-1.6, 1.7),
              title="GD on (θ² − 1)²/4 from θ0 = 0.5")  # fmt: skip
    ax[1].plot(etas.numpy(), lyap.numpy(), "k", lw=0.7)
    ax[1].axhline(0, color="tab:gray", lw=0.7)
    ax[1].plot([2.0], [math.log(3)], "o", color="tab:red", label="ln 3 at η = 2")
    ax[1].set(xlabel="η", ylabel="Lyapunov exponent", ylim=(-3, 1.4), title="log|G′| averaged along the orbit")
    ax[1].legend(fontsize=7)
    figures = [plots.save(fig, out, "quartic.png")]
    formulas = {k: Q[k] for k in ("gd_map", "fixed_point_multiplier", "two_cycle_sq", "two_cycle_multiplier")}
    return report(derived, measured, agreement, figures, formulas)


def expressivity_demo(out: Path, seed: int) -> dict[str, Any]:
    """Theorem 1: the construction on n = 12 points in R² with random ±1 labels (figure) and on n = 200,
    d = 50 with Gaussian labels; weight count, fit error against the rounding bound, the autodiff twin."""
    from . import plots

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
