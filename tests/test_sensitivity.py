"""Input-sensitivity measures against closed forms, per-sample autograd loops and finite differences.

Everything runs in float64. Tolerances come from ``cases.TOL``: agreement with autograd loops is to
rounding (``ROUND``: the same derivatives, summed in another order), agreement with central differences
to their truncation and rounding error (``FD``); closed forms are held to tighter, stated values.
Stochastic estimators use fixed seeds and are checked in units of their own standard errors, and for
error shrinking with the budget.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from cases import (
    DT,
    SHAPE,
    TOL,
    D,
    assert_close,
    convnet,
    deep_mlp,
    fd_jacobian,
    forward_rounding_bound,
    inputs,
    loop_jacobian,
    seeded,
    tanh_mlp,
)
from torch import nn

from stability.analysis.summary import summarize
from stability.errors import BadInputError, NonDeterministicModelError
from stability.functional import functionalize
from stability.sensitivity.jacobian import (
    data_direction,
    directional_derivative,
    input_jacobian,
    jacobian_frobenius,
    jacobian_frobenius_estimate,
    jacobian_spectral,
)
from stability.sensitivity.loss_gradient import loss_input_gradient, loss_input_gradient_norm
from stability.sensitivity.noise import noise_sensitivity, prediction_stability

ROUND, FD = TOL[DT]["rounding"], TOL[DT]["central_difference"]

# ---------------------------------------------------------------------------------------------- Jacobians


def test_linear_model_jacobian_is_its_weight_matrix_and_norms_are_closed_form():
    model = seeded(5, lambda: nn.Sequential(nn.Flatten(), nn.Linear(D, 4)))  # σ_2/σ_1 ≈ 0.67
    W = model[1].weight.detach()
    x = inputs(6)
    J = input_jacobian(model, x)
    assert J.shape == (6, 4, *SHAPE)
    assert torch.equal(J, W.reshape(1, 4, *SHAPE).expand_as(J))
    ones = torch.ones(6, dtype=DT)
    torch.testing.assert_close(
        jacobian_frobenius(model, x), torch.linalg.norm(W) * ones, rtol=1e-14, atol=0
    )
    spec = jacobian_spectral(model, x, tol=1e-9, iters=500)
    assert bool(spec.converged.all())
    torch.testing.assert_close(spec.values, torch.linalg.matrix_norm(W, 2) * ones, rtol=1e-10, atol=0)
    # x^T ∇_x f_c = (W x)_c: the bias does not enter.
    torch.testing.assert_close(
        data_direction(model, x), (x.flatten(1) @ W.T).norm(dim=1), rtol=1e-13, atol=0
    )


def test_tanh_network_jacobian_matches_the_hand_derived_chain_rule():
    model = tanh_mlp(seed=4)
    W1, b1, W2 = model[1].weight.detach(), model[1].bias.detach(), model[3].weight.detach()
    x = inputs(4)
    h = x.flatten(1) @ W1.T + b1  # (B, H)
    expected = torch.einsum("ch,bh,hd->bcd", W2, 1 - torch.tanh(h) ** 2, W1).reshape(4, -1, *SHAPE)
    assert_close(input_jacobian(functionalize(model), x), expected, 1e-13)


@pytest.mark.parametrize("output", ["logits", "softmax"])
@pytest.mark.parametrize("make", [tanh_mlp, convnet], ids=["mlp", "conv"])
@pytest.mark.parametrize("method", ["jacrev", "jacfwd"])
def test_jacobian_matches_autograd_loop_and_central_differences(make, output, method):
    model = make()
    x = inputs(4)
    J = input_jacobian(functionalize(model), x, output=output, method=method)
    assert_close(J, loop_jacobian(model, x, output), ROUND)
    assert_close(J, fd_jacobian(model, x, output), FD)
    assert_close(
        jacobian_frobenius(model, x, output=output),
        loop_jacobian(model, x, output).flatten(1).norm(dim=1),
        1e-12,
    )


def test_softmax_jacobian_is_the_softmax_derivative_times_the_logit_jacobian():
    model = deep_mlp(seed=5)
    x = inputs(5)
    p = torch.softmax(model(x), dim=-1).detach()
    dsoftmax = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]
    J_logits = input_jacobian(model, x).flatten(2)
    expected = (dsoftmax @ J_logits).reshape(5, -1, *SHAPE)
    assert_close(input_jacobian(model, x, output="softmax"), expected, 1e-13)


def test_forward_mode_is_chosen_for_wide_outputs_and_agrees():
    wide = seeded(6, lambda: nn.Sequential(nn.Flatten(), nn.Linear(D, 30), nn.Tanh(), nn.Linear(30, 40)))
    x = inputs(3)
    auto = input_jacobian(wide, x)
    assert torch.equal(auto, input_jacobian(wide, x, method="jacfwd"))
    assert_close(auto, input_jacobian(wide, x, method="jacrev"), 1e-13)
    assert_close(auto, loop_jacobian(wide, x), ROUND)


def test_chunking_and_the_per_sample_loop_give_the_same_jacobians():
    model = convnet(seed=7)
    x = inputs(7)
    ref = input_jacobian(model, x)
    for kwargs in ({"chunk_size": 1}, {"chunk_size": 3}, {"vjp_chunk_size": None}, {"vjp_chunk_size": 4},
                   {"vectorize": False}, {"chunk_size": 2, "vjp_chunk_size": 2}):  # fmt: skip
        assert_close(input_jacobian(model, x, **kwargs), ref, 1e-14)


def test_module_and_functional_model_give_the_same_result_with_dtype_cast():
    model32 = tanh_mlp(seed=8).float()
    x = inputs(3)
    expected = input_jacobian(functionalize(model32, dtype=DT), x)
    assert torch.equal(input_jacobian(model32, x), expected)


# ------------------------------------------------------------------------------------------ spectral norm


def test_spectral_norm_matches_dense_matrix_norm_and_reports_convergence():
    model = deep_mlp(seed=9)
    x = inputs(8)
    J = loop_jacobian(model, x).flatten(2)
    exact = torch.linalg.matrix_norm(J, 2)
    res = jacobian_spectral(functionalize(model), x, method="power", tol=1e-8, iters=1000)
    assert res.method == "power"
    assert bool(res.converged.all()) and bool((res.residuals <= 1e-8).all())
    assert res.iterations < 1000
    assert_close(res.values, exact, 1e-10)
    assert bool((res.values <= exact * (1 + 1e-12)).all())  # ‖J v‖ with unit v never exceeds ‖J‖_2
    # The returned vectors are unit top right singular vectors: ‖J v‖ = σ_max.
    v = res.vectors.flatten(1)
    torch.testing.assert_close(v.norm(dim=1), torch.ones(8, dtype=DT), rtol=1e-12, atol=0)
    assert_close(torch.einsum("bcd,bd->bc", J, v).norm(dim=1), exact, 1e-8)
    # Chunked and looped runs take the same steps from the same start.
    again = jacobian_spectral(model, x, method="power", tol=1e-8, iters=1000, chunk_size=3, vectorize=False)
    assert_close(again.values, res.values, 1e-13)


@pytest.mark.parametrize("make", [deep_mlp, convnet], ids=["mlp", "convnet"])
def test_exact_spectral_norm_is_the_dense_matrix_norm_with_its_singular_vector(make):
    model = make(seed=12)
    x = inputs(6)
    J = loop_jacobian(model, x).flatten(2)
    exact = torch.linalg.matrix_norm(J, 2)
    for kwargs in ({}, {"method": "exact", "chunk_size": 4, "vjp_chunk_size": None}, {"vectorize": False}):
        res = jacobian_spectral(model, x, **kwargs)  # "auto" is exact for these few outputs
        assert res.method == "exact" and res.iterations == 0 and bool(res.converged.all())
        assert_close(res.values, exact, 1e-12)
        assert float(res.residuals.max()) < 1e-12
        v = res.vectors.flatten(1)
        assert_close(v.norm(dim=1), torch.ones(6, dtype=DT), 1e-12)
        assert_close(torch.einsum("bcd,bd->bc", J, v).norm(dim=1), exact, 1e-12)
    # More outputs than inputs: the Gram matrix JᵀJ is the smaller one; for a linear map J = W.
    wide = seeded(13, lambda: nn.Linear(3, 7)).to(DT)
    res = jacobian_spectral(wide, inputs(2, shape=(3,)), method="exact")
    assert_close(res.values, torch.linalg.matrix_norm(wide.weight.detach(), 2).expand(2), 1e-12)
    # Softmax outputs: the Jacobian's rows are those of the softmax composed with the logits.
    Js = loop_jacobian(model, x, output="softmax").flatten(2)
    assert_close(jacobian_spectral(model, x, output="softmax").values, torch.linalg.matrix_norm(Js, 2), 1e-12)


def test_spectral_norm_reports_non_convergence_and_handles_a_zero_jacobian():
    model = deep_mlp(seed=10)
    x = inputs(4)
    res = jacobian_spectral(model, x, method="power", iters=1, tol=1e-14)
    assert res.iterations == 1 and not bool(res.converged.any())
    assert bool((res.residuals > 1e-14).all())
    dead = seeded(0, lambda: nn.Sequential(nn.Flatten(), nn.Linear(D, 3)))
    nn.init.zeros_(dead[1].weight)
    for method in ("power", "exact"):
        zero = jacobian_spectral(dead, x, method=method)
        assert torch.equal(zero.values, torch.zeros(4, dtype=DT)) and bool(zero.converged.all())


# ----------------------------------------------------------------------------------------- data direction


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("act", [nn.Tanh, nn.ReLU], ids=["tanh", "relu"])
def test_data_direction_equals_first_layer_weight_gradient_projection(seed, act):
    """docs/theory.md §2: with z = W vec(x) + b first, x^T ∇_x f_c = <W, ∇_W f_c> for every class."""
    model = deep_mlp(seed=seed, act=act)
    W = model[1].weight
    x = inputs(4, seed=seed + 10)
    expected = torch.zeros(4, 4, dtype=DT)
    for i in range(4):
        out = model(x[i : i + 1])[0]
        for c in range(4):
            (gW,) = torch.autograd.grad(out[c], W, retain_graph=True)
            expected[i, c] = (W.detach() * gW).sum()
    terms = directional_derivative(model, x)
    assert_close(terms, expected, ROUND)
    assert_close(data_direction(model, x), expected.norm(dim=1), ROUND)


def test_directional_derivative_matches_central_differences_along_any_direction():
    model = convnet(seed=11)
    x, v = inputs(3), inputs(3, seed=2)
    h = 1e-6
    with torch.no_grad():
        fd = (model(x + h * v) - model(x - h * v)) / (2 * h)
    assert_close(directional_derivative(functionalize(model), x, direction=v), fd, FD)


# ------------------------------------------------------------------------------------ loss input gradient


@pytest.mark.parametrize("loss", ["cross-entropy", "mse"])
def test_loss_input_gradient_matches_autograd_loop_and_central_differences(loss):
    model = deep_mlp(seed=12)
    x = inputs(5)
    y = torch.tensor([0, 3, 1, 2, 3])

    def ell(xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
        logits = model(xs)
        if loss == "cross-entropy":
            return F.cross_entropy(logits, ys, reduction="none")
        return 0.5 * (logits - F.one_hot(ys, 4).to(DT)).pow(2).sum(-1)

    G = loss_input_gradient(model, x, y, loss=loss)
    loop = torch.stack([_grad_one(ell, x[i : i + 1], y[i : i + 1]) for i in range(5)])
    assert_close(G, loop, ROUND)
    h = 1e-6
    E = torch.eye(D, dtype=DT).reshape(D, *SHAPE) * h
    with torch.no_grad():
        fd = torch.stack(
            [
                (ell(x[i] + E, y[i].expand(D)) - ell(x[i] - E, y[i].expand(D))).reshape(SHAPE) / (2 * h)
                for i in range(5)
            ]
        )
    assert_close(G, fd, FD)
    assert_close(loss_input_gradient_norm(model, x, y, loss=loss), loop.flatten(1).norm(dim=1), ROUND)


def _grad_one(ell, xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
    xi = xi.clone().requires_grad_(True)
    return torch.autograd.grad(ell(xi, yi)[0], xi)[0][0]


# ------------------------------------------------------------------------------- Hutchinson random projection


def test_frobenius_estimate_is_within_a_few_standard_errors_and_converges():
    model = seeded(13, lambda: nn.Sequential(nn.Flatten(), nn.Linear(D, 12), nn.Tanh(), nn.Linear(12, 10)))
    x = inputs(16)
    exact_sq = loop_jacobian(model, x).flatten(1).pow(2).sum(1)
    for probes in ("rademacher", "gaussian"):
        est = jacobian_frobenius_estimate(model, x, num_probes=64, probes=probes, generator=1)
        z = (est.squared - exact_sq) / est.squared_stderr
        assert bool((z.abs() < 4).all()), z
        # Standard errors are honest: the z-scores of 16 independent samples have a mean square near 1.
        assert 0.25 < float(z.pow(2).mean()) < 3.0
        torch.testing.assert_close(est.stderr, est.squared_stderr / (2 * est.values), rtol=1e-14, atol=0)
    errors = []
    for k in (16, 256, 4096):
        est = jacobian_frobenius_estimate(model, x, num_probes=k, generator=2)
        errors.append(float(((est.squared - exact_sq) / exact_sq).pow(2).mean().sqrt()))
    # The error falls like 1/sqrt(k): a factor 4 per step expected, at least 2.5 required.
    assert errors[1] < errors[0] / 2.5 and errors[2] < errors[1] / 2.5, errors


def test_frobenius_estimate_is_exact_for_rademacher_probes_when_rows_are_orthogonal():
    """Rademacher variance is 2 Σ_{c≠c'} (J Jᵀ)_{cc'}², zero for a Jacobian with orthogonal rows."""
    model = seeded(0, lambda: nn.Sequential(nn.Flatten(), nn.Linear(D, 5, bias=False)))
    Q, _ = torch.linalg.qr(torch.randn(D, 5, generator=torch.Generator().manual_seed(0), dtype=DT))
    with torch.no_grad():
        model[1].weight.copy_(Q.T * torch.arange(1, 6, dtype=DT)[:, None])
    est = jacobian_frobenius_estimate(model, inputs(3), num_probes=4)
    torch.testing.assert_close(est.squared, torch.full((3,), 55.0, dtype=DT), rtol=1e-13, atol=0)
    assert bool((est.squared_stderr < 1e-12).all())


def test_frobenius_estimate_does_not_depend_on_chunking():
    model = convnet(seed=14)
    x = inputs(5)
    a = jacobian_frobenius_estimate(model, x, num_probes=8, generator=3)
    b = jacobian_frobenius_estimate(model, x, num_probes=8, generator=3, chunk_size=2)
    c = jacobian_frobenius_estimate(model, x, num_probes=8, generator=3, vectorize=False)
    assert_close(b.squared, a.squared, 1e-14)
    assert_close(c.squared, a.squared, 1e-14)


def test_loss_input_gradient_takes_real_mse_targets_shaped_like_the_outputs():
    """Regression: ∇_x ½‖f(x) − t‖² = J(x)ᵀ (f(x) − t), against the autograd-loop Jacobian."""
    model = deep_mlp(seed=19)
    x = inputs(3)
    t = torch.randn(3, 4, generator=torch.Generator().manual_seed(20), dtype=DT)
    residual = (model(x) - t).detach()
    expected = torch.einsum("bcd,bc->bd", loop_jacobian(model, x).flatten(2), residual).reshape(3, *SHAPE)
    assert_close(loss_input_gradient(model, x, t, loss="mse"), expected, ROUND)
    with pytest.raises(BadInputError, match="cross-entropy needs integer class labels"):
        loss_input_gradient(model, x, t)


# ------------------------------------------------------------------------------------ the calling convention


def test_every_measure_evaluates_at_the_params_given_as_a_keyword():
    """``params=θ'`` gives what the same network with θ' loaded gives, for modules and functional models."""
    model, other = tanh_mlp(seed=21), tanh_mlp(seed=22)
    theta = {k: v.detach() for k, v in other.named_parameters()}
    x, y = inputs(3), torch.tensor([0, 4, 2])
    calls = [
        lambda m, **kw: input_jacobian(m, x, **kw),
        lambda m, **kw: jacobian_frobenius(m, x, **kw),
        lambda m, **kw: jacobian_spectral(m, x, tol=1e-9, iters=500, **kw).values,
        lambda m, **kw: directional_derivative(m, x, direction=x.flip(0), **kw),
        lambda m, **kw: data_direction(m, x, **kw),
        lambda m, **kw: jacobian_frobenius_estimate(m, x, num_probes=4, **kw).squared,
        lambda m, **kw: loss_input_gradient(m, x, y, **kw),
        lambda m, **kw: loss_input_gradient_norm(m, x, y, loss="mse", **kw),
        lambda m, **kw: noise_sensitivity(m, x, sigma=0.1, num_probes=3, **kw).values,
        lambda m, **kw: prediction_stability(m, x, sigma=0.1, num_probes=3, **kw).values,
    ]
    for call in calls:
        expected = call(other)
        assert torch.equal(call(model, params=theta), expected)
        assert torch.equal(call(functionalize(model), params=theta), expected)
        assert not torch.equal(call(model), expected)


def test_params_stay_differentiable_inputs_of_a_measure():
    """A measure is a function of θ: d/dθ Σ‖J‖_F² by autograd through it equals central differences."""
    model = tanh_mlp(seed=23)
    x = inputs(2)
    theta = {k: v.detach().clone().requires_grad_(True) for k, v in model.named_parameters()}
    jacobian_frobenius(model, x, params=theta).pow(2).sum().backward()
    g = torch.Generator().manual_seed(24)
    direction = {k: torch.randn(v.shape, generator=g, dtype=DT) for k, v in theta.items()}
    # The output bias does not move J, so it gets no gradient.
    slope = sum(float((v.grad * direction[k]).sum()) for k, v in theta.items() if v.grad is not None)
    h = 1e-6

    def at(sign: float) -> float:
        shifted = {k: (v + sign * h * direction[k]).detach() for k, v in theta.items()}
        return float(jacobian_frobenius(model, x, params=shifted).pow(2).sum())

    assert abs((at(1) - at(-1)) / (2 * h) - slope) <= FD * abs(slope)


def test_a_model_that_is_neither_a_module_nor_a_functional_model_is_named():
    x = inputs(2)
    for call in (lambda m: jacobian_frobenius(m, x), lambda m: noise_sensitivity(m, x, sigma=0.1),
                 lambda m: loss_input_gradient(m, x, torch.tensor([0, 1]))):  # fmt: skip
        with pytest.raises(BadInputError, match="model must be a FunctionalModel or an nn.Module, got function"):
            call(lambda xs: xs)
    with pytest.raises(BadInputError, match="params lacks 1.bias, 1.weight, 3.bias; pass a dict keyed like model.params"):
        input_jacobian(tanh_mlp(), x, params={})


# -------------------------------------------------------------------------------------------- finite noise


def test_noise_sensitivity_of_a_scaled_isometry_matches_the_chi_mean():
    """f = s Q x + b with orthonormal rows Q (C of them): ‖f(x+σε) − f(x)‖/σ = s ‖Qε‖ ~ s χ_C."""
    C, s = 6, 2.5
    model = seeded(0, lambda: nn.Sequential(nn.Flatten(), nn.Linear(D, C)))
    Q, _ = torch.linalg.qr(torch.randn(D, C, generator=torch.Generator().manual_seed(1), dtype=DT))
    with torch.no_grad():
        model[1].weight.copy_(s * Q.T)
    chi_mean = math.sqrt(2) * math.exp(math.lgamma((C + 1) / 2) - math.lgamma(C / 2))
    chi_std = math.sqrt(C - chi_mean**2)
    x = inputs(8)
    S = 400
    res = noise_sensitivity(model, x, sigma=0.3, num_probes=S, generator=5)
    assert res.num_probes == S and res.sigma == 0.3
    z = (res.values - s * chi_mean) / res.stderr
    assert bool((z.abs() < 4).all()), z
    pooled = (res.values.mean() - s * chi_mean) / (res.stderr.pow(2).sum().sqrt() / 8)
    assert abs(float(pooled)) < 4
    # The standard errors estimate s χ_C's spread over sqrt(S) (a 4000-draw pool: within 10%).
    assert abs(float(res.stderr.mean()) / (s * chi_std / math.sqrt(S)) - 1) < 0.1
    # For a linear model the value does not depend on σ (same noise, same result up to rounding).
    other = noise_sensitivity(model, x, sigma=3e-4, num_probes=S, generator=5)
    assert_close(other.values, res.values, 1e-9)


def test_noise_sensitivity_at_small_sigma_is_the_mean_jacobian_noise_product():
    """As σ -> 0, ‖f(x+σε) − f(x)‖/σ -> ‖J ε‖; with the same noise the gap is O(σ)."""
    model = deep_mlp(seed=15)
    x = inputs(4)
    S, sigma = 8, 1e-6
    res = noise_sensitivity(model, x, sigma=sigma, num_probes=S, generator=6, chunk_size=3)
    gen = torch.Generator().manual_seed(6)
    eps = torch.stack(
        [torch.randn(x.shape, generator=gen, dtype=DT) for _ in range(S)]
    )  # the documented order
    J = loop_jacobian(model, x).flatten(2)
    draws = torch.einsum("bcd,sbd->sbc", J, eps.flatten(2)).norm(dim=-1)  # (S, B)
    assert_close(res.values, draws.mean(0), 1e-5)
    assert_close(res.stderr, draws.std(0) / math.sqrt(S), 1e-4)
    # chunk_size changes memory, not the noise: the two results differ only by the rounding of the forward
    # passes (batched in different layouts), which the difference quotient divides by σ.
    unchunked = noise_sensitivity(model, x, sigma=sigma, num_probes=S, generator=6).values
    noisy = x + sigma * eps  # (S, B, ...)
    per_value = 2 * (forward_rounding_bound(model, x).max() + forward_rounding_bound(model, noisy.flatten(0, 1)).max())
    # ‖a‖ − ‖b‖ ≤ ‖a − b‖ ≤ √C max_c |a_c − b_c| over the C = 4 outputs; a mean over draws adds nothing.
    assert float((unchunked - res.values).abs().max()) <= math.sqrt(4) * float(per_value) / sigma


def test_prediction_stability_matches_the_gaussian_margin_formula():
    """Two logits: the noisy margin d + σ Δwᵀε ~ N(d, σ²‖Δw‖²), so P(same class) = Φ(|d| / (σ ‖Δw‖))."""
    model = seeded(16, lambda: nn.Sequential(nn.Flatten(), nn.Linear(D, 2)))
    x = inputs(10)
    W, b = model[1].weight.detach(), model[1].bias.detach()
    d = x.flatten(1) @ (W[0] - W[1]) + (b[0] - b[1])
    sigma = float(d.abs().median()) / float((W[0] - W[1]).norm())
    p = 0.5 * (1 + torch.erf(d.abs() / (sigma * (W[0] - W[1]).norm()) / math.sqrt(2)))
    res = prediction_stability(model, x, sigma=sigma, num_probes=2000, generator=7)
    se = (p * (1 - p) / 2000).sqrt()
    assert bool(((res.values - p).abs() < 4 * se + 1e-12).all()), (res.values, p)
    tiny = prediction_stability(model, x, sigma=1e-9, num_probes=4)
    assert torch.equal(tiny.values, torch.ones(10, dtype=DT)) and torch.equal(
        tiny.stderr, torch.zeros(10, dtype=DT)
    )


def test_summarize_matches_numpy():
    v = torch.randn(101, generator=torch.Generator().manual_seed(8), dtype=DT).exp()
    s = summarize(v)
    a = v.numpy()
    expected = {
        "n": 101, "mean": a.mean(), "std": a.std(), "min": a.min(), "max": a.max(), "median": np.median(a),
        "q05": np.quantile(a, 0.05), "q25": np.quantile(a, 0.25), "q75": np.quantile(a, 0.75),
        "q95": np.quantile(a, 0.95),
    }  # fmt: skip
    assert set(s) == set(expected) and all(isinstance(val, (int, float)) for val in s.values())
    for key, val in expected.items():
        assert s[key] == pytest.approx(float(val), rel=1e-13), key
    one = summarize(torch.tensor([2.0]))
    assert one["std"] == 0.0 and one["q05"] == one["max"] == 2.0 and one["n"] == 1


# ------------------------------------------------------------------------------------------------- errors


class ItemModel(nn.Module):
    """Fine for autograd one sample at a time, but ``.item()`` cannot run under ``vmap``."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(D, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = 1.0 + 0.1 * x.square().mean().item()
        return self.lin(x.flatten(1)) * scale


def test_a_model_vmap_cannot_batch_gets_a_clear_error_and_the_loop_fallback_works():
    model = seeded(17, ItemModel)
    x = inputs(3)
    with pytest.raises(BadInputError, match="not vmap-compatible.*vectorize=False"):
        input_jacobian(model, x)
    J = input_jacobian(model, x, vectorize=False)
    # .item() is a constant to autograd, so the loop reference sees the same function.
    assert_close(J, loop_jacobian(model, x), ROUND)


def test_bad_inputs_raise_one_line_errors():
    model = tanh_mlp()
    fm = functionalize(model)
    x = inputs(2)
    y = torch.tensor([0, 1])
    cases = [
        (lambda: input_jacobian(fm, torch.randn(2, 5, dtype=DT)), "forward pass fails"),
        (lambda: input_jacobian(fm, x.float()), "is torch.float64 but x is torch.float32"),
        (lambda: input_jacobian(fm, x, output="probs"), "output 'probs'"),
        (lambda: input_jacobian(fm, x, method="fd"), "method 'fd'"),
        (lambda: input_jacobian(fm, x, chunk_size=0), "chunk_size"),
        (lambda: input_jacobian("model", x), "FunctionalModel or an nn.Module"),
        (lambda: input_jacobian(fm, x[:0]), "non-empty"),
        (lambda: jacobian_spectral(fm, x, generator=1.5), "generator"),
        (lambda: jacobian_spectral(fm, x, tol=0.0), "tol"),
        (lambda: jacobian_spectral(fm, x, method="svd"), "method"),
        (lambda: input_jacobian(fm, x, vjp_chunk_size=0), "vjp_chunk_size"),
        (lambda: loss_input_gradient_norm(fm, x, torch.tensor([0, 5])), r"labels must lie in \[0, 5\)"),
        (lambda: loss_input_gradient_norm(fm, x, y.double()), "integer label"),
        (lambda: loss_input_gradient_norm(fm, x, y, loss="hinge"), "loss 'hinge'"),
        (lambda: jacobian_frobenius_estimate(fm, x, num_probes=1), "num_probes"),
        (lambda: jacobian_frobenius_estimate(fm, x, probes="sphere"), "probes 'sphere'"),
        (lambda: noise_sensitivity(fm, x, sigma=0.0), "sigma"),
        (lambda: prediction_stability(fm, x, sigma=0.1, num_probes=1), "num_probes"),
        (lambda: directional_derivative(fm, x, direction=x[:1]), "direction"),
        (lambda: summarize(torch.tensor([1.0, float("nan")])), "NaN"),
        (lambda: summarize(torch.tensor([])), "non-empty"),
    ]
    for call, message in cases:
        with pytest.raises(BadInputError, match=message) as info:
            call()
        assert "\n" not in str(info.value)


def test_training_mode_dropout_is_refused():
    model = seeded(0, lambda: nn.Sequential(nn.Flatten(), nn.Linear(D, 3), nn.Dropout(0.5))).train()
    with pytest.raises(NonDeterministicModelError):
        input_jacobian(model, inputs(2))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_measures_run_unchanged_on_cuda():
    model = convnet(seed=18)
    x = inputs(4)
    dev = torch.device("cuda")
    model_gpu = convnet(seed=18).to(dev)
    assert_close(input_jacobian(model_gpu, x.to(dev)).cpu(), input_jacobian(model, x), 1e-12)
    gen = torch.Generator(device=dev).manual_seed(0)
    spec = jacobian_spectral(model_gpu, x.to(dev), generator=gen, tol=1e-8, iters=1000)
    assert spec.values.device.type == "cuda"
    assert_close(spec.values.cpu(), jacobian_spectral(model, x, tol=1e-8, iters=1000).values, 1e-8)
    res = noise_sensitivity(model_gpu, x.to(dev), sigma=0.1, generator=gen)
    assert res.values.device.type == "cuda"
