"""Linear-stability verdicts, the Wu–Ma–E non-uniformity, and the training tracker."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from cases import dense_curvature, enumerated_second_moment, spectral_radius
from torch import nn
from torch.func import hessian, jacrev

from stability.curvature.lanczos import EigenResult, top_eigenvalues
from stability.curvature.products import CurvatureOperator
from stability.dynamics.sgd import sgd_stability
from stability.dynamics.tracking import StabilityTracker
from stability.dynamics.verdicts import gd_criterion, gd_stability, sgd_criterion
from stability.dynamics.wu_ma_e import NonUniformityOperator, nonuniformity
from stability.errors import BadInputError
from stability.functional import flatten, unflatten
from stability.losses import mean_loss
from stability.serialize import to_json

F64 = torch.float64


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).to(F64)


def data(n: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    g = gen(1)
    return torch.randn(n, 4, generator=g, dtype=F64), torch.randint(0, 3, (n,), generator=g)


def test_gd_verdicts_on_clear_cases() -> None:
    ok = gd_criterion(10.0, 0.1)
    assert ok.stable and ok.eta_lambda == pytest.approx(1.0) and ok.threshold == pytest.approx(20.0)
    assert ok.margin == pytest.approx(1.0) and "stable" in ok.note
    bad = gd_criterion(30.0, 0.1)
    assert not bad.stable and bad.margin == pytest.approx(-1.0) and "unstable" in bad.note
    assert gd_criterion(20.0, 0.1).stable  # the edge itself is marginal, counted stable
    assert not gd_criterion(10.0, 0.1, lambda_min=-0.5).stable
    assert not gd_criterion(-1.0, 0.1).stable


def test_gd_verdict_from_an_unconverged_solve_says_so() -> None:
    res = EigenResult(torch.tensor([5.0]), torch.zeros(3, 1), torch.tensor([1.0]), 3, 3, False, 1e-4, "LA")
    verdict = gd_criterion(res, 0.1)
    assert verdict.sharpness == 5.0 and "did not converge" in verdict.note
    with pytest.raises(BadInputError, match="lr"):
        gd_criterion(5.0, 0.0)


def test_gd_verdict_predicts_actual_gradient_descent_on_a_quadratic() -> None:
    # Linear regression: the loss is exactly quadratic, so linear stability is the whole story.
    x = torch.randn(20, 3, generator=gen(2), dtype=F64)
    y = torch.randn(20, generator=gen(3), dtype=F64)
    model = nn.Linear(3, 1).to(F64)
    sharp = float(top_eigenvalues(CurvatureOperator(model, x, y, loss="mse"), 1, tol=1e-12).eigenvalues[0])
    for factor in (0.95, 1.05):
        lr = factor * 2 / sharp
        w = torch.zeros(4, dtype=F64, requires_grad=True)
        X = torch.cat([x, torch.ones(20, 1, dtype=F64)], 1)
        for _ in range(400):
            loss = 0.5 * ((X @ w - y) ** 2).mean()
            (g,) = torch.autograd.grad(loss, w)
            w = (w - lr * g).detach().requires_grad_(True)
        w_star = torch.linalg.lstsq(X, y).solution
        diverged = float((w.detach() - w_star).norm()) > 1e3
        assert diverged == (not gd_criterion(sharp, lr).stable)


def test_sgd_condition_reduces_to_gd_and_its_max_lr_is_the_boundary() -> None:
    for eta_a in (0.5, 1.9, 2.1):
        v = sgd_criterion(eta_a / 0.1, 3.0, 0.1, 50, 50)  # full batch: no noise term
        assert v.noise_factor == 0.0 and v.stable == (eta_a <= 2)
    v = sgd_criterion(10.0, 40.0, 0.05, 8, 100)
    c = (100 - 8) / (8 * 99)
    assert v.noise_factor == pytest.approx(c) and v.lhs == pytest.approx((1 - 0.5) ** 2 + 0.05**2 * 1600 * c)
    edge = sgd_criterion(10.0, 40.0, v.max_lr, 8, 100)
    assert edge.lhs == pytest.approx(1.0, abs=1e-12)
    assert not sgd_criterion(10.0, 40.0, v.max_lr * 1.01, 8, 100).stable
    assert sgd_criterion(10.0, 40.0, v.max_lr * 0.99, 8, 100).stable
    # Non-uniformity alone can make a GD-stable minimum SGD-unstable.
    assert gd_criterion(10.0, 0.15).stable and not sgd_criterion(10.0, 40.0, 0.15, 2, 100).stable


@pytest.mark.parametrize(("kwargs", "match"), [
    (dict(batch_size=0), "batch_size"), (dict(batch_size=11), "batch_size"), (dict(s=-1.0), "non-negative"),
])
def test_sgd_condition_refuses_bad_input(kwargs: dict, match: str) -> None:
    args = dict(sharpness=1.0, s=1.0, lr=0.1, batch_size=2, n=10) | kwargs
    with pytest.raises(BadInputError, match=match):
        sgd_criterion(args["sharpness"], args["s"], args["lr"], args["batch_size"], args["n"])


def test_wu_ma_e_is_the_exact_mean_square_factor_in_one_dimension() -> None:
    # f = w x with MSE at interpolation: per-sample curvature h_i = x_i², minibatch map e ← (1 − η h_B) e.
    # Enumerating every batch of size B gives E[(1 − η h_B)²], which must equal the condition's lhs,
    # with a and s computed by the operators (Lanczos on H and on Σ), not by hand.
    n, B, lr = 6, 2, 0.3
    x = torch.tensor([[0.3], [1.1], [-0.8], [1.7], [0.5], [-1.3]], dtype=F64)
    model = nn.Linear(1, 1, bias=False).to(F64)
    y = model(x).detach()[:, 0]  # targets on the model: an interpolating point
    op = CurvatureOperator(model, x, y, loss="mse")
    a = float(top_eigenvalues(op, 1, tol=1e-12).eigenvalues[0])
    s = nonuniformity(model, x, y, loss="mse", tol=1e-12, seed=0).s
    h = x[:, 0] ** 2
    assert a == pytest.approx(float(h.mean()), rel=1e-12)
    assert s == pytest.approx(float(h.var(unbiased=False).sqrt()), rel=1e-10)
    factors = [(1 - lr * float(h[list(batch)].mean())) ** 2 for batch in itertools.combinations(range(n), B)]
    assert sgd_criterion(a, s, lr, B, n).lhs == pytest.approx(sum(factors) / len(factors), rel=1e-10)


def per_sample_curvatures(op: CurvatureOperator, x: torch.Tensor, y: torch.Tensor, classes: int = 3) -> list[torch.Tensor]:
    fm, flat = op.model, flatten(op.params)
    out = []
    for i in range(x.shape[0]):
        xi, yi = x[i : i + 1], y[i : i + 1]
        if op.curvature == "hessian":
            out.append(hessian(lambda f: mean_loss(op.loss, fm(unflatten(f, op.params), xi), yi))(flat))
        else:
            J = jacrev(lambda f: fm(unflatten(f, op.params), xi)[0])(flat)
            o = fm(op.params, xi)[0]
            p = o.softmax(0)
            lam = torch.eye(classes, dtype=F64) if op.loss == "mse" else torch.diag(p) - torch.outer(p, p)
            out.append(J.T @ lam @ J)
    return out


@pytest.mark.parametrize(
    ("curvature", "loss"), [("hessian", "cross-entropy"), ("hessian", "mse"), ("ggn", "cross-entropy")]
)
def test_nonuniformity_operator_equals_dense_sigma(curvature: str, loss: str) -> None:
    x, y = data()
    op = CurvatureOperator(mlp(), x, y, loss=loss, curvature=curvature, chunk_size=5)
    Hs = per_sample_curvatures(op, x, y)
    H = sum(Hs) / len(Hs)
    sigma = sum(h @ h for h in Hs) / len(Hs) - H @ H
    v = torch.randn(op.dim, generator=gen(4), dtype=F64)
    product = NonUniformityOperator(op, per_sample_chunk=3)(v)
    torch.testing.assert_close(product, sigma @ v, rtol=1e-11, atol=1e-12)
    exact = torch.linalg.eigvalsh(sigma)
    assert float(exact[0]) > -1e-10 * float(exact[-1])  # Σ = (1/n) Σ (H_i − H)² is PSD
    result = nonuniformity(mlp(), x, y, loss=loss, curvature=curvature, chunk_size=5, tol=1e-10, seed=5)
    assert result.eigen.converged
    assert result.s_squared == pytest.approx(float(exact[-1]), rel=1e-8)
    assert result.s == pytest.approx(math.sqrt(float(exact[-1])), rel=1e-8)


def test_tracker_records_every_k_steps_and_restores_modes() -> None:
    x, y = data(30)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Dropout(0.3), nn.Linear(6, 3)).to(F64)
    calls = []

    def out_norm(m: nn.Module, xs: torch.Tensor, ys: torch.Tensor) -> dict[str, torch.Tensor]:
        calls.append(m.training)
        return {"mean": m(xs).norm(dim=1).mean(), "n": torch.tensor(float(xs.shape[0]))}

    tracker = StabilityTracker(x, y, every=3, subset=20, seed=2, lr=0.5, num_probes=4, k=2, tol=1e-10,
                               measures={"out": out_norm})
    for step in range(7):
        tracker(step, model)
    assert [r["step"] for r in tracker.records] == [0, 3, 6]
    assert model.training and model[2].training  # modes restored
    assert calls == [False, False, False]  # measured in eval mode
    rec = tracker.records[0]
    model.eval()
    op = CurvatureOperator(model, x, y, subset=20, seed=2)
    exact = top_eigenvalues(op, 2, tol=1e-12, generator=gen(0)).eigenvalues
    assert rec["sharpness"] == pytest.approx(float(exact[0]), rel=1e-8)
    assert rec["eigenvalues"] == pytest.approx(exact.tolist(), rel=1e-8)
    assert rec["eta_sharpness"] == pytest.approx(0.5 * rec["sharpness"]) and rec["gd_stable"]
    assert rec["loss"] == pytest.approx(op.loss_value()) and rec["out.n"] == 20.0
    assert {"trace", "trace_stderr", "converged", "num_hvps", "sharpness_residual"} <= set(rec)
    # Unchanged parameters: the warm start spans the top-2 eigenvectors (to the previous solve's
    # tolerance), so Lanczos stops after 2-3 steps plus the 2 residual checks.
    assert tracker.records[1]["num_hvps"] <= 3 + 2 < rec["num_hvps"]
    assert tracker.records[1]["sharpness"] == pytest.approx(rec["sharpness"], rel=1e-10)


def test_tracker_refuses_bad_every() -> None:
    x, y = data()
    with pytest.raises(BadInputError, match="every"):
        StabilityTracker(x, y, every=0)


def test_tracker_records_a_diverged_model_instead_of_failing() -> None:
    """A step size past 2/λ makes the weights blow up; the record says so and the sweep goes on."""
    x, y = data(10)
    model = nn.Sequential(nn.Linear(4, 3)).to(F64)
    with torch.no_grad():
        model[0].weight.fill_(math.inf)
    record = StabilityTracker(x, y, subset=None).measure(5, model)
    assert record["diverged"] and math.isnan(record["sharpness"]) and record["step"] == 5


def test_gd_stability_measures_both_ends_of_the_spectrum_and_reports_a_saddle() -> None:
    x, y = data(20)
    model = mlp()  # a plain nn.Module at initialization: cross-entropy curvature has both signs here
    exact = torch.linalg.eigvalsh(dense_curvature(model, x, y))
    assert float(exact[0]) < -1e-3 * float(exact[-1])
    saddle = gd_stability(model, x, y, lr=0.1, tol=1e-10, max_iter=200, chunk_size=7)
    assert saddle.sharpness == pytest.approx(float(exact[-1]), rel=1e-8)
    assert saddle.lambda_min == pytest.approx(float(exact[0]), rel=1e-6)
    assert not saddle.stable and "saddle" in saddle.note
    # Logistic regression: the loss is convex (H ⪰ 0), so the verdict is η λ_max against 2.
    linear = nn.Linear(4, 3).to(F64)
    H = torch.linalg.eigvalsh(dense_curvature(linear, x, y))
    edge = 2 / float(H[-1])
    for lr, stable in ((0.9 * edge, True), (1.1 * edge, False)):
        verdict = gd_stability(linear, x, y, lr=lr, tol=1e-10, max_iter=200)
        assert verdict.stable == stable and verdict.lambda_min > -1e-8 * float(H[-1])
        assert verdict.eta_lambda == pytest.approx(lr * float(H[-1]), rel=1e-8)


def test_sgd_stability_gives_three_statements_against_dense_per_sample_hessians() -> None:
    """Each statement's value against an independent dense computation: per-sample Hessians by autodiff one
    sample at a time, and the second-moment map by enumerating every batch (no closed-form covariance)."""
    g = gen(4)
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(3, 3), nn.Tanh(), nn.Linear(3, 2)).to(F64)  # 20 parameters
    x, y = torch.randn(8, 3, generator=g, dtype=F64), torch.randint(0, 2, (8,), generator=g)
    op = CurvatureOperator(model, x, y)
    Hs = torch.stack(per_sample_curvatures(op, x, y, classes=2))
    H = Hs.mean(0)
    lr, B = 0.7, 3
    c = (8 - B) / (B * 7)
    A = torch.eye(20, dtype=F64) - lr * H
    wme = float(torch.linalg.eigvalsh(A @ A + lr**2 * c * ((Hs - H) @ (Hs - H)).mean(0))[-1])
    rho = spectral_radius(enumerated_second_moment(Hs, lr, B))
    result = sgd_stability(model, x, y, lr=lr, batch_size=B, tol=1e-10, max_iter=200)
    assert result.necessary.value == pytest.approx(lr * float(torch.linalg.eigvalsh(H)[-1]), rel=1e-8)
    assert result.sufficient.value == pytest.approx(wme, rel=1e-8)
    assert result.exact.value == pytest.approx(rho, rel=1e-9)
    assert result.noise_factor == pytest.approx(c) and result.n == result.n_evaluated == 8
    assert [s.kind for s in (result.necessary, result.sufficient, result.exact)] == ["necessary", "sufficient", "exact"]
    assert result.stable == (rho <= 1)
    with pytest.raises(BadInputError, match="batch_size"):
        sgd_stability(model, x, y, lr=0.3, batch_size=9)


def test_verdicts_and_nonuniformity_serialize_as_their_fields() -> None:
    x, y = data()
    verdict = gd_criterion(10.0, 0.1, lambda_min=0.5)
    assert to_json(verdict) == {
        "sharpness": 10.0, "lr": 0.1, "eta_lambda": verdict.eta_lambda, "threshold": 20.0, "margin": verdict.margin,
        "stable": True, "note": verdict.note, "lambda_min": 0.5,
    }  # fmt: skip
    s = nonuniformity(mlp(), x, y, subset=8, seed=1)
    out = to_json(s)
    assert list(out) == ["s", "s_squared", "eigen", "n_evaluated"] and out["n_evaluated"] == 8
    assert "eigenvectors" not in out["eigen"] and out["eigen"]["eigenvalues"] == [s.s_squared]
