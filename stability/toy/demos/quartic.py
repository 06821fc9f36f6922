"""Demo of gradient descent on (θ² − 1)²/4 as a discrete dynamical system."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stability.toy import catalog, facts
from stability.toy.demos.runs import F64, generator, report
from stability.toy.gd import gradient_descent
from stability.toy.twins import torch_twin


def run(out: Path, seed: int) -> dict[str, Any]:
    """Quartic: 600 learning rates in [0.5, 2] from θ0 = 0.5 (3000 steps) for the bifurcation diagram and the
    Lyapunov exponent; one run at η = 1.1 for the 2-cycle, 64 random starts at η = 2 for ln 3."""
    from stability.toy import plots

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
