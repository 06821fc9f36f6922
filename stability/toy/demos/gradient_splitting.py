"""Demo of T5, gradient splitting on two linear features: the fit-both point is a saddle."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.func import vmap

from stability.toy import catalog, facts
from stability.toy.demos.runs import F64, generator, report
from stability.toy.gd import gradient_descent
from stability.toy.twins import torch_twin


def plots_circle(r: float) -> Any:
    from matplotlib.patches import Circle

    return Circle((0, 0), r, fill=False, ls=":", lw=0.7, color="tab:gray")


def run(out: Path, seed: int) -> dict[str, Any]:
    """T5: for α ∈ {10°, 30°, 60°, 90°}, GD on J from 1e-8 off the fit-both saddle (η = 0.1, 300 steps); the
    Hessian spectrum and the fitted escape rate against log(1 + η sin α)."""
    from stability.toy import plots

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
