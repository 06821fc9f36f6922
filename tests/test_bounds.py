"""The bridge from parameter to input stability, checked against autodiff of the actual GD map."""

from __future__ import annotations

import cases
import pytest
import torch
from cases import dense_output_hessian, gen
from cases import small_mlp as mlp
from torch import nn
from torch.autograd.functional import jacobian
from torch.func import hessian, jacrev

from stability.dynamics.bounds import find_first_layer, first_layer_bound, first_layer_identity
from stability.errors import BadInputError
from stability.functional import flatten, functionalize, unflatten
from stability.losses import mean_loss
from stability.sensitivity.one_step import gd_map_input_jacobian, update_input_sensitivity

F64 = torch.float64


def inputs(n: int = 8) -> torch.Tensor:
    return cases.inputs(n, seed=1, shape=(2, 3))


class Reordered(nn.Module):
    """Registers the output layer first; the forward order is what counts."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(8, 2)
        self.body = nn.Linear(6, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.body(x.flatten(1))))


@pytest.mark.parametrize("bias", [True, False])
def test_identity_holds_for_a_dense_first_layer_with_or_without_bias(bias: bool) -> None:
    ident = first_layer_identity(mlp(bias=bias), inputs())
    assert ident.layer.weight == "1.weight" and ident.layer.acts_on_input
    assert ident.max_abs_error <= 1e-13 * max(ident.scale, 1.0)
    if bias:
        # Counting the bias as part of the first layer's "parameters" would break it.
        assert float((ident.lhs - ident.rhs - ident.bias_term).abs().max()) > 1e-2
    else:
        assert ident.bias_term is None


def test_identity_holds_for_a_convolution_and_fails_when_the_layer_does_not_see_x() -> None:
    torch.manual_seed(0)
    conv = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 36, 4)).to(F64)
    ident = first_layer_identity(conv, torch.randn(5, 1, 6, 6, generator=gen(2), dtype=F64))
    assert ident.layer.kind == "conv" and ident.max_abs_error <= 1e-13 * ident.scale
    squashed = nn.Sequential(nn.Flatten(), nn.Tanh(), nn.Linear(6, 3)).to(F64)
    ident = first_layer_identity(squashed, inputs())
    assert not ident.layer.acts_on_input and ident.max_abs_error > 1e-3


def test_first_layer_is_found_in_execution_order() -> None:
    layer = find_first_layer(Reordered(), inputs())
    assert (layer.name, layer.weight, layer.bias) == ("body", "body.weight", "body.bias") and layer.acts_on_input
    with pytest.raises(BadInputError, match="no nn.Linear"):
        find_first_layer(nn.Sequential(nn.Flatten(), nn.LayerNorm(6)).to(F64), inputs())


def per_sample_factors(model: nn.Module, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """``J_θ (C, D)`` and ``J_x (C, d)`` per sample by a plain autograd loop."""
    fm = functionalize(model)
    flat = flatten(fm.params)
    jt, jx = [], []
    for i in range(x.shape[0]):
        jt.append(jacobian(lambda f: fm(unflatten(f, fm.params), x[i : i + 1])[0], flat))
        jx.append(jacobian(lambda xi: fm(fm.params, xi[None])[0], x[i]).reshape(-1, x[i].numel()))
    return jt, jx


def test_scalar_model_at_interpolation_factorizes_exactly() -> None:
    model, x = mlp(c=1), inputs()
    y = model(x).detach()[:, 0]  # real targets on the model: every residual is exactly zero
    lr, n = 0.3, x.shape[0]
    sens = update_input_sensitivity(model, x, y, lr=lr, loss="mse", chunk_size=3, exact=True)
    jt, jx = per_sample_factors(model, x)
    factor = torch.stack([(lr / n) * a.norm() * b.norm() for a, b in zip(jt, jx)])
    for field in (sens.gauss_newton_fro, sens.gauss_newton_spectral, sens.product_bound, sens.exact_fro):
        torch.testing.assert_close(field, factor, rtol=1e-10, atol=0)
    for i in (0, 5):
        full = gd_map_input_jacobian(model, x, y, index=i, lr=lr, loss="mse")
        assert float(full.norm()) == pytest.approx(float(factor[i]), rel=1e-10)
    assert sens.assumptions == {"loss_is_mse": True, "at_interpolation": True}
    assert float(sens.residual.max()) < 1e-14  # batched vs single-sample forward rounding only


def test_multi_output_at_interpolation_norms_equal_the_gd_map_jacobian() -> None:
    model, x = mlp(c=3), inputs(6)
    y = model(x).detach()
    lr, n = 0.2, x.shape[0]
    sens = update_input_sensitivity(model, x, y, lr=lr, loss="mse")
    jt, jx = per_sample_factors(model, x)
    for i in range(n):
        full = gd_map_input_jacobian(model, x, y, index=i, lr=lr, loss="mse").reshape(-1, 6)
        torch.testing.assert_close(full, -(lr / n) * jt[i].T @ jx[i], rtol=1e-10, atol=1e-14)
        assert float(sens.gauss_newton_fro[i]) == pytest.approx(float(full.norm()), rel=1e-10)
        spectral = float(torch.linalg.matrix_norm(full, 2))
        assert float(sens.gauss_newton_spectral[i]) == pytest.approx(spectral, rel=1e-9)
    assert bool((sens.gauss_newton_spectral <= sens.gauss_newton_fro * (1 + 1e-12)).all())
    assert bool((sens.gauss_newton_fro <= sens.product_bound * (1 + 1e-12)).all())
    assert bool((sens.gauss_newton_fro < 0.99 * sens.product_bound).any())  # C > 1: a bound, not an identity


@pytest.mark.parametrize("loss", ["mse", "cross-entropy"])
def test_off_interpolation_the_exact_norm_includes_the_residual_term(loss: str) -> None:
    model, x = mlp(), inputs(6)
    y = torch.randint(0, 3, (6,), generator=gen(3))
    sens = update_input_sensitivity(model, x, y, lr=0.1, loss=loss, exact=True, chunk_size=4)
    for i in (1, 4):
        full = gd_map_input_jacobian(model, x, y, index=i, lr=0.1, loss=loss)
        assert float(sens.exact_fro[i]) == pytest.approx(float(full.norm()), rel=1e-10)
    assert not sens.assumptions["at_interpolation"] and "residual term" in sens.note
    assert float((sens.exact_fro - sens.gauss_newton_fro).abs().max()) > 1e-3


def test_bounded_cross_entropy_update_sensitivity_uses_its_own_output_hessian() -> None:
    """``(η/n) ‖J_θᵀ Λ_i J_x‖_F`` with ``Λ_i`` by autograd of ``−log softmax(softmax(f))_y`` itself, and the
    exact norm against autodiff of the whole GD map."""
    model, x = mlp(), inputs(5)
    y = torch.randint(0, 3, (5,), generator=gen(11))
    lr, n = 0.4, 5
    sens = update_input_sensitivity(model, x, y, lr=lr, loss="bounded-cross-entropy", exact=True, chunk_size=2)
    jt, jx = per_sample_factors(model, x)

    def bounded(z: torch.Tensor, yy: torch.Tensor) -> torch.Tensor:
        return -torch.log_softmax(torch.softmax(z, -1), -1).gather(1, yy[:, None])[:, 0]

    lam = dense_output_hessian(bounded, model(x).detach(), y)
    for i in range(n):
        expected = (lr / n) * (jt[i].T @ lam[i] @ jx[i]).norm()
        assert float(sens.gauss_newton_fro[i]) == pytest.approx(float(expected), rel=1e-10)
    for i in (0, 3):
        full = gd_map_input_jacobian(model, x, y, index=i, lr=lr, loss="bounded-cross-entropy")
        assert float(sens.exact_fro[i]) == pytest.approx(float(full.norm()), rel=1e-10)
    assert "bounded-cross-entropy" in sens.note


def test_first_layer_bound_refuses_a_loss_whose_output_hessian_is_indefinite() -> None:
    model, x = mlp(), inputs()
    y = torch.randint(0, 3, (8,), generator=gen(12))
    message = ("the first-layer bound needs a loss whose output Hessian is positive semi-definite; "
               "bounded-cross-entropy's is not")
    with pytest.raises(BadInputError, match=message):
        first_layer_bound(model, x, y, loss="bounded-cross-entropy")


def train_to_interpolation(model: nn.Module, x: torch.Tensor, y: torch.Tensor, lr: float = 0.5) -> nn.Module:
    """Full-batch GD on the project's MSE until every residual is below 1e-6."""
    target = torch.nn.functional.one_hot(y, 3).to(F64)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    for _ in range(3000):
        opt.zero_grad()
        mean_loss("mse", model(x), y).backward()
        opt.step()
        with torch.no_grad():
            if float((model(x) - target).norm(dim=1).max()) < 1e-6:
                return model
    raise AssertionError("full-batch GD did not reach interpolation")


def test_first_layer_inequality_on_an_mlp_trained_to_interpolation() -> None:
    g = gen(0)
    x, y = torch.randn(10, 5, generator=g, dtype=F64), torch.randint(0, 3, (10,), generator=g)
    torch.manual_seed(0)
    model = train_to_interpolation(nn.Sequential(nn.Linear(5, 64), nn.Tanh(), nn.Linear(64, 3)).to(F64), x, y)
    bound = first_layer_bound(model, x, y, loss="mse", chunk_size=4)
    assert bound.assumptions == {"loss_is_mse": True, "at_interpolation": True, "first_layer_linear": True,
                                 "first_layer_acts_on_input": True, "curvature_is_hessian": True}
    assert "G = H" in bound.note
    # Both sides independently: per-sample autograd loop for the left, dense Hessian for the right.
    fm = functionalize(model)
    flat = flatten(fm.params)
    jx = [jacobian(lambda xi: model(xi[None])[0], x[i]) for i in range(10)]
    lhs = sum(float(x[i].norm() ** 2 * jx[i].norm() ** 2) for i in range(10)) / 10
    H = hessian(lambda f: mean_loss("mse", fm(unflatten(f, fm.params), x), y))(flat)
    J = jacrev(lambda f: fm(unflatten(f, fm.params), x))(flat).reshape(30, -1)
    w2 = float(torch.linalg.matrix_norm(model[0].weight.detach(), 2)) ** 2
    assert bound.lhs == pytest.approx(lhs, rel=1e-10)
    assert bound.weight_norm**2 == pytest.approx(w2, rel=1e-12)
    assert bound.ggn_trace == pytest.approx(float((J * J).sum()) / 10, rel=1e-10)
    assert bound.ggn_trace == pytest.approx(float(H.trace()), rel=1e-4)  # G = H up to the ~1e-6 residuals
    assert bound.rhs == pytest.approx(w2 * float(H.trace()), rel=1e-4)
    assert bound.holds and bound.lhs <= bound.rhs_first_layer <= bound.rhs and 0 < bound.ratio <= 1
    assert bound.max_sample_ratio <= 1 + 1e-12 and bound.max_residual < 1e-6 and bound.residual_loss < 1e-12


def test_cross_entropy_bound_is_stated_about_the_gauss_newton_matrix() -> None:
    model, x = mlp(), inputs()
    y = torch.randint(0, 3, (8,), generator=gen(4))
    bound = first_layer_bound(model, x, y, loss="cross-entropy", num_probes=8, generator=gen(5))
    assert not bound.assumptions["loss_is_mse"] and not bound.assumptions["curvature_is_hessian"]
    assert "Gauss-Newton matrix G is used in place of H" in bound.note
    assert bound.holds and bound.max_sample_ratio <= 1 + 1e-12
    assert bound.hessian_trace is not None and bound.hessian_trace_stderr > 0


def test_convolutional_first_layer_reports_its_operator_norm_and_says_the_bound_is_not_implied() -> None:
    torch.manual_seed(0)
    conv = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 36, 3)).to(F64)
    x = torch.randn(6, 1, 6, 6, generator=gen(6), dtype=F64)
    y = torch.randint(0, 3, (6,), generator=gen(7))
    bound = first_layer_bound(conv, x, y, loss="mse")
    basis = torch.eye(36, dtype=F64).reshape(36, 1, 6, 6)
    dense = torch.nn.functional.conv2d(basis, conv[0].weight.detach(), None, padding=1).reshape(36, -1).T
    assert bound.weight_norm == pytest.approx(float(torch.linalg.matrix_norm(dense, 2)), rel=1e-7)
    assert not bound.assumptions["first_layer_linear"] and "convolution" in bound.note


def test_bad_inputs_raise() -> None:
    model, x = mlp(), inputs()
    y = torch.randint(0, 3, (8,), generator=gen(8))
    with pytest.raises(BadInputError, match="lr"):
        update_input_sensitivity(model, x, y, lr=0.0)
    with pytest.raises(BadInputError, match="index"):
        gd_map_input_jacobian(model, x, y, index=8, lr=0.1)
    with pytest.raises(BadInputError, match="same number"):
        first_layer_bound(model, x, y[:3])
    with pytest.raises(BadInputError, match="loss"):
        first_layer_bound(model, x, y, loss="hinge")
