"""The fixed point's sensitivity dθ*/dx_i = −H⁺ M_i, against a dense pseudo-inverse and toy T1's closed forms."""

from __future__ import annotations

import math

import cases
import pytest
import torch
from cases import T1, dense_fixed_point_jacobians, small_mlp

from stability import serialize
from stability.curvature.products import seeded_subset
from stability.errors import BadInputError
from stability.sensitivity.fixed_point import fixed_point_displacement, minres
from stability.sensitivity.one_step import update_input_sensitivity

F64 = torch.float64


def interpolating(seed: int = 0, n: int = 6):
    """A 3-output tanh MLP (D = 33) and inputs whose MSE targets are its own outputs: an interpolating minimum."""
    model = small_mlp(c=3, seed=seed)
    x = cases.inputs(n, seed=seed + 1, shape=(2, 3))
    return model, x, model(x).detach()


def norms(jac: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.linalg.matrix_norm(jac), torch.linalg.matrix_norm(jac, 2)


def test_minres_gives_the_pseudo_inverse_on_the_range_and_least_squares_off_it():
    g = cases.gen(0)
    Q, _ = torch.linalg.qr(torch.randn(12, 12, generator=g, dtype=F64))
    lam = torch.tensor([5.0, 3.0, -2.0, 1.0, 0.5, -0.25, 0.1, 0.05, 0, 0, 0, 0], dtype=F64)
    A = Q @ torch.diag(lam) @ Q.T  # symmetric, indefinite, rank 8
    B = A @ torch.randn(12, 5, generator=g, dtype=F64)  # in the range
    out = minres(A, B, tol=1e-12, max_iter=50)
    torch.testing.assert_close(out.solution, torch.linalg.pinv(A, hermitian=True) @ B, rtol=0, atol=1e-8)
    assert bool(out.converged.all()) and float(out.residuals.max()) < 1e-8  # Krylov exhaustion is tested at √ε
    off = torch.randn(12, 1, generator=g, dtype=F64)  # has a null-space part: inconsistent
    ls = minres(A, off, tol=1e-12, max_iter=50)
    torch.testing.assert_close(ls.solution, torch.linalg.pinv(A, hermitian=True) @ off, rtol=0, atol=1e-8)
    null = Q[:, 8:] @ Q[:, 8:].T @ off
    assert float(ls.outside[0]) == pytest.approx(float(null.norm() / off.norm()), abs=1e-8)
    assert bool(ls.converged.all()) and float(ls.residuals[0]) < 1e-8


def test_displacement_matches_a_dense_pseudo_inverse_at_an_interpolating_minimum():
    model, x, y = interpolating()
    ref = dense_fixed_point_jacobians(model, x, y, "mse")  # (n, D, d)
    out = fixed_point_displacement(model, x, y, loss="mse", lr=0.2, tol=1e-11, max_iter=200, block=4)
    fro, spec = norms(ref)
    torch.testing.assert_close(out.displacement_fro, fro, rtol=1e-7, atol=0)
    torch.testing.assert_close(out.displacement_spectral, spec, rtol=1e-7, atol=0)
    assert out.converged and out.max_solve_residual < 1e-9
    assert out.assumptions == {"loss_is_mse": True, "at_interpolation": True}
    one = update_input_sensitivity(model, x, y, lr=0.2, loss="mse")
    torch.testing.assert_close(out.one_step_fro, one.gauss_newton_fro, rtol=1e-10, atol=0)
    torch.testing.assert_close(out.one_step_spectral, one.gauss_newton_spectral, rtol=1e-10, atol=0)


def test_off_interpolation_the_residual_term_is_included_when_asked():
    model, x, _ = interpolating(seed=3)
    y = cases.labels(x.shape[0], 3, seed=4)
    ref = dense_fixed_point_jacobians(model, x, y, "cross-entropy", rtol=1e-12)
    out = fixed_point_displacement(model, x, y, loss="cross-entropy", exact=True, tol=1e-12, max_iter=300, samples=2)
    assert out.includes_residual_term and not out.assumptions["at_interpolation"]
    fro, spec = norms(ref[out.indices])
    torch.testing.assert_close(out.displacement_fro, fro, rtol=1e-6, atol=0)
    torch.testing.assert_close(out.displacement_spectral, spec, rtol=1e-6, atol=0)
    assert "not an interpolating MSE minimum" in out.note
    gn = fixed_point_displacement(model, x, y, loss="cross-entropy", tol=1e-12, max_iter=300, samples=2)
    assert "Gauss-Newton part" in gn.note and not torch.allclose(gn.displacement_fro, fro, rtol=1e-3)


def test_a_seeded_subset_of_samples_gives_the_same_values_for_those_samples():
    model, x, y = interpolating(n=8)
    full = fixed_point_displacement(model, x, y, loss="mse", tol=1e-11)
    part = fixed_point_displacement(model, x, y, loss="mse", tol=1e-11, samples=3, seed=5)
    idx = seeded_subset(8, 3, 5)
    assert part.n == 8 and part.num_evaluated == 3 and torch.equal(part.indices, idx)
    torch.testing.assert_close(part.displacement_fro, full.displacement_fro[idx], rtol=1e-8, atol=0)
    assert part.one_step_fro is None and part.lr is None
    js = serialize.to_json(part)
    assert js["num_evaluated"] == 3 and js["n"] == 8 and "displacement_fro" not in js and js["method"] == "minres"


@pytest.mark.parametrize("lr", [0.1, 0.45])
def test_t1_closed_forms_rank_the_two_minima_in_opposite_orders(lr):
    x0 = y0 = 1.0
    c = y0 / x0
    x, y = torch.tensor([[x0]], dtype=F64), torch.tensor([[y0]], dtype=F64)
    found = {}
    for name, (a, b) in {"balanced": (1.0, 1.0), "sharp": (4.0, 0.25)}.items():
        out = fixed_point_displacement(T1(a, b), x, y, loss="mse", lr=lr, tol=1e-13)
        r = math.hypot(a, b)
        assert float(out.displacement_fro[0]) == pytest.approx(abs(c) / (abs(x0) * r), rel=1e-10)
        assert float(out.one_step_fro[0]) == pytest.approx(lr * abs(x0 * c) * r, rel=1e-12)
        found[name] = (float(out.displacement_fro[0]), float(out.one_step_fro[0]) / lr)
    assert found["balanced"][0] == pytest.approx(0.7071, abs=1e-4) and found["balanced"][1] == pytest.approx(1.4142, abs=1e-4)
    assert found["sharp"][0] == pytest.approx(0.2495, abs=1e-4) and found["sharp"][1] == pytest.approx(4.0078, abs=1e-4)
    # the sharper minimum moves less when its input moves, while one GD step there moves more
    assert found["sharp"][0] < found["balanced"][0] and found["sharp"][1] > found["balanced"][1]


def test_bad_arguments_are_refused_in_one_line():
    model, x, y = interpolating()
    with pytest.raises(BadInputError, match="samples"):
        fixed_point_displacement(model, x, y, loss="mse", samples=0)
    with pytest.raises(BadInputError, match="curvature"):
        fixed_point_displacement(model, x, y, loss="mse", curvature="fisher")
    with pytest.raises(BadInputError, match=r"right-hand sides have shape \(3, 1\)"):
        minres(torch.eye(4, dtype=F64), torch.ones(3, 1, dtype=F64))
