"""Curvature operators and the eigen/trace/density estimators against dense float64 references."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from cases import T1, dense_curvature
from torch import nn
from torch.func import hessian, jacrev

from stability.curvature.density import spectral_density
from stability.curvature.lanczos import power_iteration, top_eigenvalues
from stability.curvature.measures import hessian_density, hessian_eigenvalues, hessian_trace
from stability.curvature.operators import LambdaOperator, MatrixOperator
from stability.curvature.products import (
    CurvatureOperator,
    ggn_vector_product,
    hessian_vector_product,
    seeded_subset,
)
from stability.curvature.trace import TraceResult, adaptive_trace, hutchinson_trace, hutchpp_trace
from stability.errors import BadInputError, NonDeterministicModelError
from stability.functional import flatten, unflatten
from stability.losses import get_loss, mean_loss
from stability.serialize import to_json

F64 = torch.float64


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def mlp(d: int = 4, h: int = 6, c: int = 3, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d, h), nn.Tanh(), nn.Linear(h, c)).to(F64)


def data(n: int = 20, d: int = 4, c: int = 3, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = gen(seed)
    return torch.randn(n, d, generator=g, dtype=F64), torch.randint(0, c, (n,), generator=g)


def dense_hessian(op: CurvatureOperator, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``∇²_θ L`` of the flat parameter vector, by torch.func.hessian on the whole data set at once."""
    fm = op.model
    return hessian(lambda f: mean_loss(op.loss, fm(unflatten(f, op.params), x), y))(flatten(op.params))


def dense_ggn(op: CurvatureOperator, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``(1/n) Σ_i J_iᵀ Λ_i J_i`` with ``Λ`` written out from its definition (independent of the code's)."""
    fm, n = op.model, x.shape[0]
    flat = flatten(op.params)
    J = jacrev(lambda f: fm(unflatten(f, op.params), x))(flat)  # (n, C, D)
    out = fm(op.params, x)
    total = torch.zeros(op.dim, op.dim, dtype=F64)
    for i in range(n):
        if op.loss == "mse":
            lam = torch.eye(out.shape[1], dtype=F64)
        else:
            lam = hessian(lambda o: torch.nn.functional.cross_entropy(o[None], y[i : i + 1]))(out[i])
        total += J[i].T @ lam @ J[i]
    return total / n


@pytest.mark.parametrize("loss", ["cross-entropy", "mse"])
@pytest.mark.parametrize("chunk_size", [None, 7])
def test_hvp_equals_dense_hessian(loss: str, chunk_size: int | None) -> None:
    x, y = data()
    op = CurvatureOperator(mlp(), x, y, loss=loss, chunk_size=chunk_size)
    H = dense_hessian(op, x, y)
    V = torch.randn(op.dim, 3, generator=gen(2), dtype=F64)
    for j in range(3):
        torch.testing.assert_close(op(V[:, j]), H @ V[:, j], rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(op @ V, H @ V, rtol=1e-12, atol=1e-13)
    assert op.num_products == 6
    # The dict-level function is the same product.
    vd = unflatten(V[:, 0], op.params)
    hv = hessian_vector_product(op.model, x, y, vd, params=op.params, loss=loss, chunk_size=chunk_size)
    torch.testing.assert_close(flatten(hv), H @ V[:, 0], rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("loss", ["cross-entropy", "mse"])
def test_ggn_product_equals_dense_jt_lambda_j(loss: str) -> None:
    x, y = data()
    op = CurvatureOperator(mlp(), x, y, loss=loss, curvature="ggn", chunk_size=6)
    G = dense_ggn(op, x, y)
    v = torch.randn(op.dim, generator=gen(3), dtype=F64)
    torch.testing.assert_close(op(v), G @ v, rtol=1e-12, atol=1e-13)
    gv = ggn_vector_product(op.model, x, y, unflatten(v, op.params), params=op.params, loss=loss)
    torch.testing.assert_close(flatten(gv), G @ v, rtol=1e-12, atol=1e-13)
    assert torch.linalg.eigvalsh(G).min() > -1e-12  # GGN is PSD whatever the point


def test_bounded_cross_entropy_hessian_equals_dense_and_has_no_ggn() -> None:
    """Badger's bounded loss, written out independently in :mod:`stability.losses`."""
    bounded_cross_entropy = get_loss("bounded-cross-entropy")

    x, y = data()
    op = CurvatureOperator(mlp(), x, y, loss="bounded-cross-entropy", chunk_size=5)
    fm = op.model
    H = hessian(lambda f: bounded_cross_entropy(fm(unflatten(f, op.params), x), y))(flatten(op.params))
    v = torch.randn(op.dim, generator=gen(5), dtype=F64)
    torch.testing.assert_close(op(v), H @ v, rtol=1e-12, atol=1e-13)
    assert op.loss_value() == pytest.approx(float(bounded_cross_entropy(fm(op.params, x), y)), rel=1e-12)
    with pytest.raises(BadInputError, match="curvature='hessian'"):
        CurvatureOperator(mlp(), x, y, loss="bounded-cross-entropy", curvature="ggn")


def test_mse_hessian_equals_ggn_at_interpolation() -> None:
    # Targets equal to the model's own outputs make every residual exactly zero.
    model, (x, _) = mlp(), data()
    y = model(x).detach()
    H = CurvatureOperator(model, x, y, loss="mse")
    G = CurvatureOperator(model, x, y, loss="mse", curvature="ggn")
    v = torch.randn(H.dim, generator=gen(4), dtype=F64)
    torch.testing.assert_close(H(v), G(v), rtol=1e-12, atol=1e-13)


def test_quadratic_loss_has_its_closed_form_hessian() -> None:
    # Linear regression, L = (1/2n) Σ (wᵀx + b − y)²: H = (1/n) X̃ᵀ X̃ with X̃ = [X, 1].
    x, _ = data(n=30, d=5)
    y = torch.randn(30, generator=gen(5), dtype=F64)
    model = nn.Linear(5, 1).to(F64)
    Xt = torch.cat([x, torch.ones(30, 1, dtype=F64)], dim=1)
    H = Xt.T @ Xt / 30
    op = CurvatureOperator(model, x, y, loss="mse", chunk_size=8)
    exact = torch.linalg.eigvalsh(H).flip(0)
    res = top_eigenvalues(op, 3, tol=1e-12, generator=gen(0))
    torch.testing.assert_close(res.eigenvalues, exact[:3], rtol=1e-10, atol=0)
    tr = hutchinson_trace(op, 200, generator=gen(1))
    assert abs(tr.estimate - float(H.trace())) < 4 * tr.stderr


def test_lanczos_top_k_matches_eigvalsh_with_evidence() -> None:
    x, y = data(n=25)
    op = CurvatureOperator(mlp(h=8), x, y)
    H = dense_hessian(op, x, y)
    exact = torch.linalg.eigvalsh(H)
    scale = float(exact.abs().max())
    by_magnitude = exact[exact.abs().argsort(descending=True)]
    for which, want in [("LA", exact.flip(0)[:4]), ("SA", exact[:2]), ("LM", by_magnitude[:3])]:
        res = top_eigenvalues(op, len(want), which=which, tol=1e-11, max_iter=400, generator=gen(7))
        assert res.converged
        torch.testing.assert_close(res.eigenvalues, want, rtol=1e-8, atol=1e-10 * scale)
        assert float(res.residuals.max()) < 1e-9 * scale
        # The vectors are eigenvectors of the dense matrix, not just of the projection.
        V = res.eigenvectors
        torch.testing.assert_close(H @ V, V * res.eigenvalues, rtol=0, atol=1e-8 * scale)
        torch.testing.assert_close(V.T @ V, torch.eye(len(want), dtype=F64), rtol=0, atol=1e-10)
        assert res.num_hvps == res.iterations + len(want)


def test_lanczos_thick_restart_reaches_same_answer() -> None:
    # Clustered top of the spectrum and a basis of 8 force several restarts.
    evals = torch.cat([torch.tensor([10.0, 9.9, 9.8]), torch.linspace(0, 9, 197)]).to(F64)
    Q, _ = torch.linalg.qr(torch.randn(200, 200, generator=gen(8), dtype=F64))
    A = (Q * evals) @ Q.T
    res = top_eigenvalues(A, 3, tol=1e-10, basis_size=8, max_iter=3000, generator=gen(9))
    assert res.converged and res.iterations > 8
    torch.testing.assert_close(res.eigenvalues, evals[:3], rtol=1e-9, atol=0)


def test_lanczos_finds_null_space_beyond_an_invariant_krylov_space() -> None:
    # Rank-3 matrix: the Krylov space closes after 3 steps; the 4th eigenvalue (0) needs a fresh start.
    U = torch.randn(30, 3, generator=gen(10), dtype=F64)
    A = U @ torch.diag(torch.tensor([3.0, 2.0, 1.0], dtype=F64)) @ U.T
    exact = torch.linalg.eigvalsh(A).flip(0)[:4]
    res = top_eigenvalues(A, 4, tol=1e-10, generator=gen(11))
    assert res.converged
    torch.testing.assert_close(res.eigenvalues, exact, rtol=1e-9, atol=1e-9)


def test_power_iteration_converges_but_needs_more_products_than_lanczos() -> None:
    evals = torch.cat([torch.tensor([1.0, 0.97]), torch.linspace(0, 0.9, 98)]).to(F64)
    Q, _ = torch.linalg.qr(torch.randn(100, 100, generator=gen(12), dtype=F64))
    A = (Q * evals) @ Q.T
    pi = power_iteration(A, tol=1e-6, max_iter=5000, generator=gen(13))
    lz = top_eigenvalues(A, 1, tol=1e-6, generator=gen(13))
    assert pi.converged and lz.converged
    assert abs(float(pi.eigenvalues[0]) - 1.0) < 1e-6 and abs(float(lz.eigenvalues[0]) - 1.0) < 1e-10
    assert lz.num_hvps * 5 < pi.num_hvps  # gap ratio 0.97: power needs hundreds of steps, Lanczos tens
    assert pi.history[-1] == float(pi.eigenvalues[0]) and len(pi.history) == pi.iterations


def test_power_iteration_returns_largest_magnitude_not_largest_value() -> None:
    A = torch.diag(torch.tensor([-5.0, 1.0, 2.0], dtype=F64))
    assert float(power_iteration(A, tol=1e-10, generator=gen(0)).eigenvalues[0]) == pytest.approx(-5.0, abs=1e-8)
    assert float(top_eigenvalues(A, 1, generator=gen(0)).eigenvalues[0]) == pytest.approx(2.0, abs=1e-12)


def test_per_layer_operator_is_the_dense_sub_block() -> None:
    x, y = data()
    model = mlp()
    full = CurvatureOperator(model, x, y)
    H = dense_hessian(full, x, y)
    names = list(full.params)
    sizes = [t.numel() for t in full.params.values()]
    offsets = [0, *torch.tensor(sizes).cumsum(0).tolist()]
    layer = ["2.weight", "2.bias"]
    op = CurvatureOperator(model, x, y, param_filter=layer)
    idx = torch.cat([torch.arange(offsets[names.index(k)], offsets[names.index(k) + 1]) for k in layer])
    block = op.matmat(torch.eye(op.dim, dtype=F64))
    torch.testing.assert_close(block, H[idx][:, idx], rtol=1e-12, atol=1e-13)
    pred = CurvatureOperator(model, x, y, param_filter=lambda n: n.startswith("2."))
    assert pred.dim == op.dim == len(idx)


def test_seeded_subset_is_fixed_and_equals_that_subset() -> None:
    x, y = data(n=50)
    model = mlp()
    a = CurvatureOperator(model, x, y, subset=12, seed=3)
    b = CurvatureOperator(model, x, y, subset=12, seed=3)
    c = CurvatureOperator(model, x, y, subset=12, seed=4)
    assert torch.equal(a.indices, b.indices) and not torch.equal(a.indices, c.indices) and a.n == 12
    direct = CurvatureOperator(model, x[a.indices], y[a.indices])
    v = torch.randn(a.dim, generator=gen(0), dtype=F64)
    torch.testing.assert_close(a(v), direct(v), rtol=1e-12, atol=1e-14)
    assert CurvatureOperator(model, x, y, subset=500).indices is None  # larger than the data: all of it


def test_loss_value_and_dtype_cast() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3))  # float32 module
    x, y = data()
    x = x.float()
    op = CurvatureOperator(model, x, y, dtype=F64)
    assert op.dtype == F64 and op.x.dtype == F64 and next(model.parameters()).dtype == torch.float32
    with torch.no_grad():
        reference = float(get_loss("cross-entropy")(model.double()(x.double()), y))
    assert op.loss_value() == pytest.approx(reference, rel=1e-12)


def test_hutchinson_within_stderr_and_converges_with_budget() -> None:
    x, y = data()
    op = CurvatureOperator(mlp(), x, y, loss="mse")
    exact = float(dense_hessian(op, x, y).trace())
    est = hutchinson_trace(op, 64, generator=gen(0), block_size=16)
    assert est.num_hvps == 64 and len(est.samples) == 64
    assert abs(est.estimate - exact) < 4 * est.stderr
    # Error over 40 seeds shrinks like 1/sqrt(m): 16x the budget, about 4x smaller.
    A = MatrixOperator(dense_hessian(op, x, y))
    err = {m: sum(abs(hutchinson_trace(A, m, generator=gen(s)).estimate - exact) for s in range(40))
           for m in (8, 128)}
    assert 2.5 < err[8] / err[128] < 6.5


def test_hutchpp_is_exact_on_low_rank_and_beats_hutchinson_on_decaying_spectrum() -> None:
    U = torch.randn(60, 4, generator=gen(20), dtype=F64)
    low = U @ U.T
    est = hutchpp_trace(low, 15, generator=gen(0))  # sketch of 5 columns captures rank 4
    assert est.estimate == pytest.approx(float(low.trace()), rel=1e-10) and est.stderr < 1e-8
    Q, _ = torch.linalg.qr(torch.randn(200, 200, generator=gen(21), dtype=F64))
    A = (Q * torch.arange(1, 201, dtype=F64).pow(-2.0)) @ Q.T
    exact = float(A.trace())

    def rmse(fn: Callable[..., TraceResult]) -> float:
        return math.sqrt(sum((fn(A, 30, generator=gen(s)).estimate - exact) ** 2 for s in range(30)) / 30)

    assert rmse(hutchpp_trace) < 0.25 * rmse(hutchinson_trace)


def test_adaptive_trace_picks_hutchpp_on_a_decaying_spectrum_and_hutchinson_on_a_flat_one() -> None:
    Q, _ = torch.linalg.qr(torch.randn(200, 200, generator=gen(22), dtype=F64))
    spectra = {"hutch++": torch.arange(1, 201, dtype=F64).pow(-2.0), "hutchinson": torch.linspace(1, 2, 200, dtype=F64)}
    for expected, eig in spectra.items():
        A = (Q * eig) @ Q.T
        exact = float(eig.sum())
        runs = [adaptive_trace(A, 30, generator=gen(s)) for s in range(30)]
        assert {r.method for r in runs} == {expected} and all(r.num_hvps == 30 for r in runs)
        assert all(0 <= r.sketch_fraction <= 1 for r in runs)
        # Unbiased with honest standard errors: the z-scores of 30 seeds have mean ~0 and spread ~1.
        z = torch.tensor([(r.estimate - exact) / r.stderr for r in runs], dtype=F64)
        assert abs(float(z.mean())) < 4 / math.sqrt(30) + 0.3 and 0.4 < float(z.std()) < 2.5
        # The choice is the better estimator of the two at the same budget.
        rmse = {fn: math.sqrt(sum((fn(A, 30, generator=gen(s)).estimate - exact) ** 2 for s in range(30)) / 30)
                for fn in (adaptive_trace, hutchinson_trace, hutchpp_trace)}
        assert rmse[adaptive_trace] < 1.3 * min(rmse[hutchinson_trace], rmse[hutchpp_trace])
    # Convergence on a network Hessian: within a few standard errors, and error shrinking with the budget.
    x, y = data()
    op = CurvatureOperator(mlp(), x, y, loss="mse")
    exact = float(dense_hessian(op, x, y).trace())
    est = hessian_trace(mlp(), x, y, loss="mse", num_probes=60, method="auto")
    assert est.method in ("hutchinson", "hutch++") and abs(est.estimate - exact) < 4 * est.stderr
    H = MatrixOperator(dense_hessian(op, x, y))
    err = {m: sum(abs(adaptive_trace(H, m, generator=gen(s)).estimate - exact) for s in range(30)) for m in (9, 144)}
    assert err[9] > 3 * err[144]


def test_slq_density_integrates_to_one_and_moments_are_exact_on_a_diagonal() -> None:
    # For diagonal A and Rademacher v, vᵀ A^k v / D = mean(a^k) exactly, so each probe's quadrature
    # reproduces the normalized moments up to degree 2m − 1.
    a = torch.linspace(-1, 3, 50, dtype=F64) ** 3
    sd = spectral_density(torch.diag(a), num_probes=4, lanczos_steps=6, generator=gen(0))
    for k in range(0, 12):
        want = torch.full((4,), float((a**k).mean()), dtype=F64)
        torch.testing.assert_close(sd.moments(k).samples, want, rtol=1e-9, atol=1e-9)
    assert sd.trace().estimate == pytest.approx(float(a.sum()), rel=1e-10)
    assert float(sd.nodes.min()) >= float(a.min()) - 1e-9 and float(sd.nodes.max()) <= float(a.max()) + 1e-9
    grid = torch.linspace(-40, 60, 20001, dtype=F64)
    dens = sd.density(grid, sigma=0.5)
    assert float(torch.trapezoid(dens, grid)) == pytest.approx(1.0, abs=1e-8)
    assert (dens >= 0).all() and sd.num_hvps == 24


def test_slq_on_a_network_hessian_estimates_its_trace() -> None:
    x, y = data()
    op = CurvatureOperator(mlp(), x, y)
    H = dense_hessian(op, x, y)
    sd = spectral_density(op, num_probes=30, lanczos_steps=8, generator=gen(1))
    tr = sd.trace()
    assert abs(tr.estimate - float(H.trace())) < 4 * tr.stderr
    m2 = sd.moments(2)
    assert abs(m2.estimate - float((H @ H).trace()) / op.dim) < 4 * m2.stderr
    assert torch.allclose(sd.weights.sum(1), torch.ones(30, dtype=F64), atol=1e-12)


def test_train_mode_dropout_is_refused_with_the_fix() -> None:
    model = nn.Sequential(nn.Linear(4, 6), nn.Dropout(0.5), nn.Linear(6, 3)).to(F64)
    x, y = data()
    with pytest.raises(NonDeterministicModelError, match=r"model\.eval\(\)"):
        CurvatureOperator(model, x, y)
    model.eval()
    CurvatureOperator(model, x, y)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(loss="hinge"), "loss 'hinge'"),
        (dict(curvature="fisher"), "curvature 'fisher'"),
        (dict(chunk_size=0), "chunk_size"),
        (dict(subset=0), "subset"),
    ],
)
def test_bad_options_raise_one_line_errors(kwargs: dict, match: str) -> None:
    x, y = data()
    with pytest.raises(BadInputError, match=match):
        CurvatureOperator(mlp(), x, y, **kwargs)


def test_bad_inputs_raise() -> None:
    x, y = data()
    with pytest.raises(BadInputError, match="integer class labels"):
        CurvatureOperator(mlp(), x, y.to(F64))
    with pytest.raises(BadInputError, match="same positive number"):
        CurvatureOperator(mlp(), x, y[:-1])
    with pytest.raises(BadInputError, match=r"labels span \[3, 5\] but the model has 3 outputs"):
        CurvatureOperator(mlp(), x, y + 3, loss="mse")
    with pytest.raises(BadInputError, match="real targets have 1 entries"):
        CurvatureOperator(mlp(), x, torch.zeros(20, dtype=F64), loss="mse")
    with pytest.raises(BadInputError, match="no differentiable parameters selected"):
        CurvatureOperator(mlp(), x, y, param_filter=["9.weight"])
    op = CurvatureOperator(mlp(), x, y)
    with pytest.raises(BadInputError, match="expected"):
        op(torch.zeros(3, dtype=F64))
    with pytest.raises(BadInputError, match="k must be"):
        top_eigenvalues(op, 0)
    with pytest.raises(BadInputError, match="which"):
        top_eigenvalues(op, 1, which="BE")
    with pytest.raises(BadInputError, match="basis_size"):
        top_eigenvalues(op, 3, basis_size=4)
    with pytest.raises(BadInputError, match="square"):
        MatrixOperator(torch.zeros(2, 3))


class TanhUnit(nn.Module):
    """T4: f = a tanh(w x + b)."""

    def __init__(self, a: float, w: float, b: float) -> None:
        super().__init__()
        self.a, self.w, self.b = (nn.Parameter(torch.tensor(v, dtype=F64)) for v in (a, w, b))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.a * torch.tanh(self.w * x + self.b)


@pytest.mark.parametrize(("a", "x0", "y0"), [(0.5, 1.5, 2.0), (2.0, -0.7, 1.1), (1.0, 2.0, 3.0)])
def test_toy_t1_hessian_eigenvalues_at_a_fixed_point(a: float, x0: float, y0: float) -> None:
    b = y0 / (x0 * a)  # on the fixed set a b = y0 / x0
    op = CurvatureOperator(T1(a, b), torch.tensor([[x0]], dtype=F64), torch.tensor([y0], dtype=F64),
                           loss="mse")
    res = top_eigenvalues(op, 2, tol=1e-12, generator=gen(0))
    torch.testing.assert_close(res.eigenvalues, torch.tensor([x0**2 * (a**2 + b**2), 0.0], dtype=F64),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("w", [0.6, 1.2242, 2.0])
def test_toy_t4_sharpness_on_the_fixed_branch_uses_the_mean_loss(w: float) -> None:
    # docs/theory.md, T4: λ(w) = 2u + 1/u − 2, u = tanh² w, at (a, w, b) = (coth w, w, 0). That formula is the
    # sharpness of L = (1/n) Σ ½ r² with n = 2 (the project's MSE); summing over the points doubles it.
    x, y = torch.tensor([[-1.0], [1.0]], dtype=F64), torch.tensor([-1.0, 1.0], dtype=F64)
    model = TanhUnit(1 / math.tanh(w), w, 0.0)
    u = math.tanh(w) ** 2
    formula = 2 * u + 1 / u - 2
    op = CurvatureOperator(model, x, y, loss="mse")
    assert op.loss_value() < 1e-28  # a fixed point: both points fitted
    sharp = float(top_eigenvalues(op, 1, tol=1e-12, generator=gen(0)).eigenvalues[0])
    assert sharp == pytest.approx(formula, rel=1e-10)
    summed = hessian(lambda f: 0.5 * ((f[0] * torch.tanh(f[1] * x[:, 0] + f[2]) - y) ** 2).sum())(
        flatten(op.params))
    assert float(torch.linalg.eigvalsh(summed)[-1]) == pytest.approx(2 * formula, rel=1e-10)


def test_agrees_with_curvlinops_on_a_medium_mlp() -> None:
    curvlinops = pytest.importorskip("curvlinops")
    from scipy.sparse.linalg import eigsh

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 5)).to(F64)
    x = torch.randn(200, 20, generator=gen(1), dtype=F64)
    y = torch.randint(0, 5, (200,), generator=gen(2))
    batches = list(zip(x.split(64), y.split(64)))
    params = list(model.parameters())
    theirs_h = curvlinops.HessianLinearOperator(model, nn.CrossEntropyLoss(), params, batches)
    theirs_g = curvlinops.GGNLinearOperator(model, nn.CrossEntropyLoss(), params, batches)
    ours_h = CurvatureOperator(model, x, y, chunk_size=50)
    ours_g = CurvatureOperator(model, x, y, curvature="ggn", chunk_size=50)
    V = torch.randn(ours_h.dim, 2, generator=gen(3), dtype=F64)
    for j in range(2):
        torch.testing.assert_close(ours_h(V[:, j]), theirs_h @ V[:, j], rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(ours_g(V[:, j]), theirs_g @ V[:, j], rtol=1e-10, atol=1e-12)
    top = float(eigsh(theirs_h.to_scipy(), k=1, which="LA", tol=1e-12)[0][0])
    mine = top_eigenvalues(ours_h, 1, tol=1e-10, generator=gen(4))
    assert mine.converged and float(mine.eigenvalues[0]) == pytest.approx(top, rel=1e-8)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_same_numbers_on_cuda() -> None:
    x, y = data()
    model = mlp()
    cpu = CurvatureOperator(model, x, y, chunk_size=7)
    gpu = CurvatureOperator(mlp().cuda(), x, y, chunk_size=7)  # data stay on the CPU, chunks move
    v = torch.randn(cpu.dim, generator=gen(0), dtype=F64)
    torch.testing.assert_close(gpu(v.cuda()).cpu(), cpu(v), rtol=1e-12, atol=1e-13)
    res = top_eigenvalues(gpu, 2, tol=1e-10, generator=gen(1))
    want = top_eigenvalues(cpu, 2, tol=1e-10, generator=gen(1)).eigenvalues
    torch.testing.assert_close(res.eigenvalues, want, rtol=1e-8, atol=0)


def test_estimators_without_a_generator_are_deterministic_and_leave_the_global_rng_alone() -> None:
    A = torch.diag(torch.linspace(0, 1, 30, dtype=F64))
    state = torch.random.get_rng_state()
    first = (hutchinson_trace(A, 5).estimate, hutchpp_trace(A, 6).estimate,
             float(top_eigenvalues(A, 1, max_iter=3).eigenvalues[0]))
    assert torch.equal(torch.random.get_rng_state(), state)
    assert first == (hutchinson_trace(A, 5).estimate, hutchpp_trace(A, 6).estimate,
                     float(top_eigenvalues(A, 1, max_iter=3).eigenvalues[0]))


# ---------------------------------------------- the calling convention (model, x, y, *, params=None, ...)


@pytest.mark.parametrize(("loss", "curvature"), [("cross-entropy", "hessian"), ("mse", "hessian"),
                                                 ("cross-entropy", "ggn"), ("bounded-cross-entropy", "hessian")])
def test_products_take_a_plain_module_at_its_own_point_or_another(loss: str, curvature: str) -> None:
    x, y = data()
    model = mlp()
    product = hessian_vector_product if curvature == "hessian" else ggn_vector_product
    C = dense_curvature(model, x, y, loss, curvature)
    V = torch.randn(C.shape[0], 3, generator=gen(6), dtype=F64)
    torch.testing.assert_close(product(model, x, y, V[:, 0], loss=loss), C @ V[:, 0], rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(product(model, x, y, V, loss=loss, chunk_size=6), C @ V, rtol=1e-12, atol=1e-13)
    other = {k: p.detach() + 0.1 * torch.randn(p.shape, generator=gen(7), dtype=F64)
             for k, p in model.named_parameters()}
    C_other = dense_curvature(model, x, y, loss, curvature, params=other)
    as_dict = product(model, x, y, unflatten(V[:, 1], other), params=other, loss=loss)
    assert list(as_dict) == list(other)
    torch.testing.assert_close(flatten(as_dict), C_other @ V[:, 1], rtol=1e-12, atol=1e-13)


def test_operator_matmul_equals_the_dense_product_and_refuses_other_shapes() -> None:
    x, y = data()
    op = CurvatureOperator(mlp(), x, y, curvature="ggn")
    G = dense_curvature(mlp(), x, y, "cross-entropy", "ggn")
    V = torch.randn(op.dim, 4, generator=gen(8), dtype=F64)
    torch.testing.assert_close(op @ V[:, 0], G @ V[:, 0], rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(op @ V, G @ V, rtol=1e-12, atol=1e-13)
    assert op.num_products == 5
    with pytest.raises(BadInputError, match=rf"op @ v needs a vector \({op.dim},\) or a matrix"):
        op @ torch.zeros(2, 2, 2, dtype=F64)
    with pytest.raises(BadInputError, match="shaped like the parameters"):
        op @ {"0.weight": torch.zeros(2)}


@pytest.mark.parametrize("bad", [lambda p, x: x, "mlp", None])
def test_a_model_that_is_not_a_module_gets_one_line(bad) -> None:
    x, y = data()
    v = torch.zeros(5, dtype=F64)
    for fn in (hessian_vector_product, ggn_vector_product):
        with pytest.raises(BadInputError, match=r"^model must be a FunctionalModel or an nn\.Module, got ") as info:
            fn(bad, x, y, v)
        assert "\n" not in str(info.value)


def test_lambda_operator_is_what_the_solvers_see() -> None:
    x, y = data()
    H = dense_curvature(mlp(), x, y)
    op = LambdaOperator(lambda v: H @ v, H.shape[0], F64, "cpu", matmat=lambda V: H @ V)
    exact = torch.linalg.eigvalsh(H).flip(0)
    res = top_eigenvalues(op, 2, tol=1e-11, generator=gen(0))
    torch.testing.assert_close(res.eigenvalues, exact[:2], rtol=1e-9, atol=0)
    assert op.num_products == res.num_hvps
    V = torch.randn(H.shape[0], 3, generator=gen(1), dtype=F64)
    torch.testing.assert_close(op @ V, H @ V, rtol=0, atol=0)
    plain = LambdaOperator(lambda v: H @ v, H.shape[0], F64, "cpu")  # no matmat: column by column
    torch.testing.assert_close(plain @ V, H @ V, rtol=1e-14, atol=1e-14)
    assert plain.num_products == 3
    with pytest.raises(BadInputError, match="dim must be a positive integer"):
        LambdaOperator(lambda v: v, 0, F64, "cpu")


@pytest.mark.parametrize("curvature", ["hessian", "ggn"])
def test_model_level_eigenvalues_trace_and_density_equal_dense(curvature: str) -> None:
    x, y = data(n=40)
    model = mlp(h=5)
    idx = seeded_subset(40, 25, 3)
    C = dense_curvature(model, x[idx], y[idx], "cross-entropy", curvature)
    exact = torch.linalg.eigvalsh(C)
    common = dict(curvature=curvature, subset=25, seed=3, chunk_size=10)
    top = hessian_eigenvalues(model, x, y, k=3, tol=1e-11, **common)
    assert top.converged
    torch.testing.assert_close(top.eigenvalues, exact.flip(0)[:3], rtol=1e-8, atol=1e-10)
    bottom = hessian_eigenvalues(model, x, y, which="SA", tol=1e-11, max_iter=400, **common)
    torch.testing.assert_close(bottom.eigenvalues, exact[:1], rtol=1e-7, atol=1e-9 * float(exact.abs().max()))
    tr = hessian_trace(model, x, y, num_probes=64, **common)
    assert tr.method == "hutchinson" and tr.num_samples == 64
    assert abs(tr.estimate - float(C.trace())) < 4 * tr.stderr
    full = hessian_trace(model, x, y, num_probes=3 * C.shape[0], method="hutch++", **common)  # sketch spans all
    assert full.estimate == pytest.approx(float(C.trace()), rel=1e-10)
    sd = hessian_density(model, x, y, num_probes=20, lanczos_steps=6, **common)
    assert sd.num_hvps == 120 and abs(sd.trace().estimate - float(C.trace())) < 4 * sd.trace().stderr
    with pytest.raises(BadInputError, match="method 'exact' is not one of: hutchinson, hutch\\+\\+"):
        hessian_trace(model, x, y, method="exact")


def test_results_serialize_without_their_bulky_evidence() -> None:
    x, y = data()
    eig = hessian_eigenvalues(mlp(), x, y, k=2)
    out = to_json(eig)
    assert list(out) == ["eigenvalues", "residuals", "iterations", "num_hvps", "converged", "tol", "which"]
    assert out["eigenvalues"] == eig.eigenvalues.tolist()
    tr = hutchinson_trace(torch.eye(4, dtype=F64), 5)
    assert to_json(tr) == {"estimate": 4.0, "stderr": 0.0, "num_hvps": 5, "method": "hutchinson", "num_samples": 5}


def test_the_docs_example_runs() -> None:
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "curvature.md").read_text()
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(code, "docs/curvature.md", "exec"), {})  # noqa: S102 - our own docs


@pytest.mark.parametrize("curvature", ["hessian", "ggn"])
@pytest.mark.parametrize("loss", ["cross-entropy", "mse"])
def test_retained_and_recomputed_products_equal_the_dense_matrix(curvature: str, loss: str) -> None:
    x, y = data()
    C = dense_curvature(mlp(), x, y, loss, curvature)
    V = torch.randn(C.shape[0], 3, generator=gen(9), dtype=F64)
    for primal, chunk_size in [("retain", None), ("retain", 7), ("recompute", None), ("auto", 7)]:
        op = CurvatureOperator(mlp(), x, y, loss=loss, curvature=curvature, chunk_size=chunk_size, primal=primal)
        assert op.primal == ("recompute" if primal == "auto" else primal)
        torch.testing.assert_close(op @ V[:, 0], C @ V[:, 0], rtol=1e-12, atol=1e-13)
        torch.testing.assert_close(op @ V, C @ V, rtol=1e-12, atol=1e-13)
        if op.primal == "retain":
            assert op.retained_bytes > 0
            op.batched_matmat = True  # the CUDA path (one backward pass with is_grads_batched), on CPU
            torch.testing.assert_close(op @ V, C @ V, rtol=1e-12, atol=1e-13)
            op.release()
            assert op.retained_bytes == 0
            torch.testing.assert_close(op @ V[:, 1], C @ V[:, 1], rtol=1e-12, atol=1e-13)
        else:
            assert op.retained_bytes == 0
    assert CurvatureOperator(mlp(), x, y).primal == "retain"  # auto, unchunked


def test_retained_graph_follows_in_place_parameter_updates() -> None:
    x, y = data()
    model = mlp()
    op = CurvatureOperator(model, x, y)  # holds the module's parameters without copying them
    v = torch.randn(op.dim, generator=gen(10), dtype=F64)
    op @ v
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1.5)  # an optimizer step would do the same
    H = dense_curvature(model, x, y, "cross-entropy", "hessian")
    torch.testing.assert_close(op @ v, H @ v, rtol=1e-12, atol=1e-13)


def test_retained_products_treat_a_parameter_the_loss_ignores_as_zero_curvature() -> None:
    class Partial(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.used, self.unused = nn.Linear(4, 3).to(F64), nn.Linear(4, 3).to(F64)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.used(x)

    torch.manual_seed(0)
    model, (x, y) = Partial(), data()
    v = torch.randn(30, generator=gen(11), dtype=F64)
    for curvature in ("hessian", "ggn"):
        retained = CurvatureOperator(model, x, y, curvature=curvature, primal="retain") @ v
        recomputed = CurvatureOperator(model, x, y, curvature=curvature, primal="recompute") @ v
        torch.testing.assert_close(retained, recomputed, rtol=1e-12, atol=1e-13)
        assert torch.equal(retained[15:], torch.zeros(15, dtype=F64))
    with pytest.raises(BadInputError, match="primal"):
        CurvatureOperator(model, x, y, primal="linearize")
