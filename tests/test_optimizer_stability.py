"""Optimizer-aware linear stability from short real runs, against dense Hessians."""

from __future__ import annotations

import pytest
import torch
from cases import dense_curvature
from torch import nn

from stability.dynamics.optimizers import (
    OptimizerSetting,
    linear_stability,
    linear_stability_criterion,
    setting_from_optimizer,
    stability_threshold,
)
from stability.errors import BadInputError

F64 = torch.float64


def short_run(optimizer: str, steps: int = 30) -> tuple[nn.Module, torch.optim.Optimizer, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(24, 4, generator=g, dtype=F64), torch.randint(0, 3, (24,), generator=g)
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).to(F64)
    opt = (torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3) if optimizer == "sgd"
           else torch.optim.Adam(model.parameters(), lr=0.01))  # fmt: skip
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval(), opt, x, y


def test_momentum_run_gets_the_heavy_ball_threshold_on_the_shifted_hessian() -> None:
    model, opt, x, y = short_run("sgd")
    setting = setting_from_optimizer(opt, model)
    assert setting.kind == "heavy-ball" and setting.momentum == 0.9 and setting.weight_decay == 1e-3
    verdict = linear_stability(model, x, y, setting=setting, tol=1e-10, max_iter=200)
    eig = torch.linalg.eigvalsh(dense_curvature(model, x, y)) + 1e-3
    assert verdict.threshold == pytest.approx(2 * 1.9 / 0.05) and verdict.sharpness == pytest.approx(float(eig[-1]), rel=1e-8)
    assert verdict.lambda_min == pytest.approx(float(eig[0]), rel=1e-6, abs=1e-9)
    assert verdict.stable == (float(eig[0]) > -1e-8 and float(eig[-1]) <= verdict.threshold)


def test_adam_run_gets_the_preconditioned_sharpness_and_38_over_eta() -> None:
    model, opt, x, y = short_run("adam")
    setting = setting_from_optimizer(opt, model)
    assert setting.kind == "adam" and setting.determined
    verdict = linear_stability(model, x, y, setting=setting, tol=1e-10, max_iter=200)
    t = 30
    v = torch.cat([opt.state[p]["exp_avg_sq"].reshape(-1) for p in model.parameters()])
    P = (v / (1 - 0.999**t)).sqrt() + 1e-8
    H = dense_curvature(model, x, y)
    want = torch.linalg.eigvalsh(H / P.sqrt()[:, None] / P.sqrt()[None, :])
    eta = 0.01 / (1 - 0.9**t)
    assert setting.lr == pytest.approx(eta)
    assert verdict.threshold == pytest.approx(38 / eta) and verdict.sharpness == pytest.approx(float(want[-1]), rel=1e-7)
    assert verdict.ratio == pytest.approx(float(want[-1]) * eta / 38, rel=1e-7)


def test_adam_without_its_state_is_not_determined_and_says_why() -> None:
    model, _, x, y = short_run("adam", steps=1)
    setting = OptimizerSetting("adam", 0.01, 0.9, source="the final checkpoint")
    verdict = linear_stability(model, x, y, setting=setting)
    assert verdict.stable is None and verdict.sharpness is None and "not determined" in verdict.note
    assert "second-moment" in linear_stability_criterion(
        OptimizerSetting("adam", 0.01, 0.9, missing="no second-moment state"), 1.0).note


def test_thresholds() -> None:
    assert stability_threshold("gd", 0.1) == pytest.approx(20)
    assert stability_threshold("heavy-ball", 0.1, momentum=0.9) == pytest.approx(38)
    assert stability_threshold("nesterov", 0.1, momentum=0.9) == pytest.approx(38 / 2.8)
    assert stability_threshold("adam", 0.1, momentum=0.9) == pytest.approx(380)
    with pytest.raises(BadInputError, match="momentum"):
        stability_threshold("heavy-ball", 0.1, momentum=1.0)


def test_tracker_records_the_live_optimizers_threshold_and_preconditioned_sharpness() -> None:
    from stability.dynamics.tracking import StabilityTracker

    model, opt, x, y = short_run("adam")
    record = StabilityTracker(x, y, subset=None, optimizer=opt, tol=1e-10, max_iter=200).measure(30, model)
    want = linear_stability(model, x, y, setting=setting_from_optimizer(opt, model), tol=1e-10, max_iter=200)
    assert record["optimizer"] == "adam" and record["threshold"] == pytest.approx(want.threshold)
    assert record["optimizer_sharpness"] == pytest.approx(want.sharpness, rel=1e-7)
    model, opt, x, y = short_run("sgd")
    record = StabilityTracker(x, y, subset=None, optimizer=opt, tol=1e-10, max_iter=200).measure(30, model)
    eig = torch.linalg.eigvalsh(dense_curvature(model, x, y))
    assert record["threshold"] == pytest.approx(3.8 / 0.05)
    assert record["optimizer_sharpness"] == pytest.approx(float(eig[-1]) + 1e-3, rel=1e-7)
