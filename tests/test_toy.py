"""stability.toy: symbolic derivations against autodiff, closed forms against dense computations, GD runs,
the Theorem 1 construction, and the demo registry's contract. The demos themselves run in
tests/test_theory_docs.py (every one is cited there)."""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys

import numpy as np
import pytest
import sympy as sp
import torch
from torch.func import grad, vmap

from stability.errors import BadInputError
from stability.toy import catalog, facts
from stability.toy import symbolic as S
from stability.toy.demos import DEMOS, DemoInfo, run_demo
from stability.toy.expressivity import fit_finite_sample
from stability.toy.gd import gradient_descent, sharpness
from stability.toy.twins import lambdify_twin, torch_twin

F64 = torch.float64
RNG = np.random.default_rng(0)


def _models() -> dict[str, S.ToyModel]:
    return {
        "two-layer-scalar": catalog.two_layer_scalar(1.3, -0.7),
        "linear-min-norm": catalog.linear_regression(RNG.normal(size=(3, 5)), RNG.normal(size=3)),
        "diagonal-net": catalog.diagonal_net(RNG.normal(size=(2, 3)), RNG.normal(size=2)),
        "tanh-two-point": catalog.tanh_two_point(),
        "gradient-splitting": catalog.gradient_splitting(0.7, 1.0, -0.5),
        "quartic": catalog.quartic(),
        # ReLU net kept tiny: its symbolic derivatives (Max, Heaviside) are the slowest to build
        "finite-sample-expressivity": catalog.finite_sample_network(RNG.normal(size=(2, 1)), RNG.normal(size=2)),
    }


MODELS = _models()


def test_catalog_names_match_the_demos():
    assert set(catalog.CATALOG) == set(DEMOS) == {
        "two-layer-scalar", "linear-min-norm", "diagonal-net", "tanh-two-point",
        "gradient-splitting", "quartic", "finite-sample-expressivity",
    }  # fmt: skip


@pytest.mark.parametrize("name", list(MODELS))
def test_lambdified_and_autodiff_twins_agree(name):
    """sympy → NumPy and torch.func on the same model, at random float64 points: every derived quantity."""
    model = MODELS[name]
    nt, tt = lambdify_twin(model), torch_twin(model)
    rng = np.random.default_rng(1)
    for _ in range(3):
        th = rng.normal(size=len(model.params))
        T = torch.tensor(th)
        eta = float(rng.uniform(0.1, 1.0))
        # float64 round-off on O(1) quantities; the two sides sum terms in different orders
        tol = dict(rtol=1e-11, atol=1e-11)
        np.testing.assert_allclose(nt.loss(th), float(tt.loss(T)), **tol)
        np.testing.assert_allclose(nt.gradient(th), tt.gradient(T).numpy(), **tol)
        np.testing.assert_allclose(nt.hessian(th), tt.hessian(T).numpy(), **tol)
        np.testing.assert_allclose(nt.gd_map(th, eta), tt.gd_map(T, eta).numpy(), **tol)
        np.testing.assert_allclose(nt.gd_jacobian(th, eta), tt.gd_jacobian(T, eta).numpy(), **tol)
        if nt.output is not None:
            x = rng.normal(size=len(model.inputs))
            np.testing.assert_allclose(nt.output(th, x), float(tt.output(T, torch.tensor(x))), **tol)
            np.testing.assert_allclose(nt.input_gradient(th, x), tt.input_gradient(T, torch.tensor(x)).numpy(), **tol)
            np.testing.assert_allclose(nt.gd_input_jacobian(th, eta), tt.gd_input_jacobian(T, eta).numpy(), **tol)


def test_hessian_matches_finite_differences_of_the_gradient():
    """An independent third route: central differences of the autodiff gradient (error O(h²) ≈ 1e-10)."""
    tw = torch_twin(catalog.tanh_two_point())
    th = torch.tensor([0.7, -1.1, 0.3], dtype=F64)
    h = 1e-5
    fd = torch.stack([(tw.gradient(th + h * e) - tw.gradient(th - h * e)) / (2 * h) for e in torch.eye(3, dtype=F64)])
    torch.testing.assert_close(fd, tw.hessian(th), rtol=0, atol=1e-8)
    num = lambdify_twin(catalog.tanh_two_point()).hessian(th.numpy())
    np.testing.assert_allclose(num, fd.numpy(), atol=1e-8)


def test_gd_jacobian_is_identity_minus_eta_hessian():
    model = MODELS["diagonal-net"]
    eta = sp.Symbol("eta")
    assert S.gd_jacobian(model, eta) - (sp.eye(len(model.params)) - eta * S.hessian(model)) == sp.zeros(6, 6)


@pytest.mark.parametrize("name", ["two-layer-scalar", "tanh-two-point", "gradient-splitting", "quartic"])
def test_declared_fixed_sets_are_critical_and_interpolating(name):
    model = MODELS[name]
    tw = torch_twin(model)
    point = sp.lambdify(model.fixed_set.coords, list(model.fixed_set.point), "numpy")
    for s in (0.6, -1.3, 2.1)[: 3 if model.fixed_set.coords else 1]:
        th = torch.tensor([float(v) for v in point(*([s] * len(model.fixed_set.coords)))], dtype=F64)
        assert tw.gradient(th).abs().max() < 1e-12
        if model.loss_override is None:
            assert (tw.outputs(th) - tw.Y).abs().max() < 1e-12


def test_gauss_newton_equals_hessian_on_the_interpolating_set():
    model = catalog.tanh_two_point()
    w = 0.9
    th = torch.tensor([1 / math.tanh(w), w, 0.0], dtype=F64)
    tw = torch_twin(model)
    g = tw.parameter_gradients(th)
    torch.testing.assert_close(tw.hessian(th), g.T @ g / 2, rtol=0, atol=1e-14)
    GN = sp.lambdify(model.params, S.gauss_newton(model))(*th.tolist())
    np.testing.assert_allclose(np.asarray(GN, dtype=float), (g.T @ g / 2).numpy(), atol=1e-14)


def test_stable_learning_rates():
    assert S.stable_learning_rates([4, 1, 0]) == sp.Interval.open(0, sp.Rational(1, 2))
    assert S.stable_learning_rates([4, 1, 0], transverse=False) == sp.EmptySet
    assert S.stable_learning_rates([2, -1]) == sp.EmptySet
    lam = sp.Symbol("lam", positive=True)
    assert S.stable_learning_rates([lam]) == sp.Interval.open(0, 2 / lam)
    with pytest.raises(BadInputError, match="positive=True"):
        S.stable_learning_rates([sp.Symbol("unknown_sign")])


def test_t1_facts_against_the_twin():
    x0, y0, eta = 0.8, 1.5, 0.3
    tw = torch_twin(catalog.two_layer_scalar(x0, y0))
    subs = {facts.X0: x0, facts.Y0: y0, facts.ETA: eta}
    a = torch.linspace(0.5, 3, 7, dtype=F64)
    star = torch.stack([a, (y0 / x0) / a], 1)
    sharp = sharpness(tw.loss, star)
    formula = sp.lambdify((facts.A, facts.B), facts.TWO_LAYER_SCALAR["sharpness"].subs(subs))
    torch.testing.assert_close(sharp, torch.as_tensor(formula(star[:, 0].numpy(), star[:, 1].numpy())))
    assert float(sharp.min()) >= float(facts.TWO_LAYER_SCALAR["min_sharpness"].subs(subs)) - 1e-12
    ab = [float(facts.TWO_LAYER_SCALAR[k].subs(subs)) for k in ("balanced_a", "balanced_b")]
    balanced = torch.tensor([ab], dtype=F64)
    torch.testing.assert_close(sharpness(tw.loss, balanced), torch.tensor([2 * x0 * y0], dtype=F64))


def test_t4_facts_against_the_twin():
    tw = torch_twin(catalog.tanh_two_point())
    w = float(facts.TANH_TWO_POINT["argmin_w"])
    th = torch.tensor([1 / math.tanh(w), w, 0.0], dtype=F64)
    eig = torch.linalg.eigvalsh(tw.hessian(th))
    assert abs(float(eig[-1]) - (2 * math.sqrt(2) - 2)) < 1e-13
    assert float(facts.TANH_TWO_POINT["max_stable_lr"]) == pytest.approx(1 + math.sqrt(2), abs=1e-15)
    # the flattest point of the branch: moving w either way raises the sharpness
    for dw in (-1e-3, 1e-3):
        w2 = w + dw
        th2 = torch.tensor([1 / math.tanh(w2), w2, 0.0], dtype=F64)
        assert float(torch.linalg.eigvalsh(tw.hessian(th2))[-1]) > float(eig[-1])


def test_quartic_facts_numerically():
    lr = float(facts.QUARTIC["period_four_lr"])
    mult = sp.lambdify(facts.ETA, facts.QUARTIC["two_cycle_multiplier"])
    assert mult(1.0) == pytest.approx(1.0) and mult(lr) == pytest.approx(-1.0)
    # the symmetric 2-cycle ±√((η+2)/η) bounds the orbits; at η = 2 the max of G on [0, ∞) touches it
    theta_c = math.sqrt(3 / 6)
    assert theta_c * (1 + 2 - 2 * theta_c**2) == pytest.approx(math.sqrt(2))


def test_linear_facts_match_gd_and_refuse_rank_deficient_data():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(4, 9, generator=g, dtype=F64)
    y = torch.randn(4, generator=g, dtype=F64)
    w0 = torch.randn(3, 9, generator=g, dtype=F64)
    tw = torch_twin(catalog.linear_regression(X, y))
    eta = 1 / float(torch.linalg.eigvalsh(X.T @ X / 4)[-1])
    run = gradient_descent(tw.loss, w0, eta, 1500)
    torch.testing.assert_close(run.final, facts.linear_gd_limit(X, y, w0), rtol=0, atol=1e-10)
    torch.testing.assert_close(X @ facts.min_norm_interpolant(X, y), y)
    with pytest.raises(BadInputError, match="full row rank"):
        facts.min_norm_interpolant(torch.cat([X, X[:1]]), torch.cat([y, y[:1]]))


def test_gradient_descent_matches_closed_form_and_flags_divergence():
    h = torch.tensor([1.0, 3.0], dtype=F64)

    def loss(th: torch.Tensor) -> torch.Tensor:
        return 0.5 * (h * th * th).sum()

    th0 = torch.tensor([[1.0, 1.0], [1.0, 1.0]], dtype=F64)
    lrs = torch.tensor([0.5, 1.0], dtype=F64)  # the second has |1 − η h_2| = 2: grows as 2^t
    run = gradient_descent(loss, th0, lrs, 40, bound=1e3)
    t = torch.arange(41, dtype=F64)[:, None]
    torch.testing.assert_close(run.thetas[:, 0], (1 - 0.5 * h) ** t)
    assert run.diverged.tolist() == [False, True]
    assert run.final[1].norm() <= 1e3  # frozen inside the ball
    assert run.converged(step_tol=1e-9, loss_tol=None).tolist() == [True, False]  # 0.5^40 ≈ 1e-12
    torch.testing.assert_close(sharpness(loss, th0), torch.tensor([3.0, 3.0], dtype=F64))
    with pytest.raises(BadInputError, match="shape"):
        gradient_descent(loss, th0[0], 0.1, 3)
    with pytest.raises(BadInputError, match="positive"):
        gradient_descent(loss, th0, 0.0, 3)


def test_gd_input_jacobian_rank_one_at_interpolation():
    model = catalog.two_layer_scalar(1.0, 2.0)
    tw = torch_twin(model)
    th = torch.tensor([0.5, 4.0], dtype=F64)  # ab = 2 = y0/x0
    J = tw.gd_input_jacobian(th, 0.1)
    g = tw.parameter_gradients(th)
    fx = vmap(grad(tw.output_fn, argnums=1), in_dims=(None, 0))(th, tw.X)
    torch.testing.assert_close(J, -0.1 * g[:, :, None] * fx[:, None, :])


def test_fit_finite_sample_interpolates_and_is_seeded():
    g = torch.Generator().manual_seed(3)
    X = torch.randn(40, 5, generator=g, dtype=F64)
    y = torch.randint(0, 10, (40,), generator=g).to(F64)
    fit = fit_finite_sample(X, y, generator=7)
    assert fit.num_weights == 2 * 40 + 5
    assert fit.max_fit_error <= 10 * fit.error_bound
    torch.testing.assert_close(fit(X), y, rtol=0, atol=10 * fit.error_bound)
    assert torch.equal(fit_finite_sample(X, y, generator=7).a, fit.a)
    assert bool((fit.b[1:] > fit.b[:-1]).all())
    onehot = torch.nn.functional.one_hot(y.long(), 10).to(F64)
    multi = fit_finite_sample(X, onehot, generator=7)
    assert multi.num_weights == 40 * 11 + 5 and multi(X).shape == (40, 10)
    single = fit_finite_sample(X[:1], y[:1])
    assert single.max_fit_error < 1e-12
    f32 = fit_finite_sample(X.float(), y.float(), generator=7)
    assert f32.w.dtype == torch.float32


def test_fit_finite_sample_refuses_bad_input():
    X = torch.randn(5, 2, dtype=F64)
    with pytest.raises(BadInputError, match="coincide"):
        fit_finite_sample(torch.cat([X, X[2:3]]), torch.arange(6, dtype=F64))
    with pytest.raises(BadInputError, match=r"\(n, d\)"):
        fit_finite_sample(X, torch.zeros(4, dtype=F64))


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: S.ToyModel(name="t", params=()), "no parameters"),
        (lambda: S.ToyModel(name="t", params=(sp.Symbol("a"),), inputs=(sp.Symbol("x"),)), "no data points"),
        (lambda: catalog.two_layer_scalar().with_points([((1, 2), 1)]), "coordinates"),
        (lambda: dataclasses.replace(catalog.two_layer_scalar(), weights=(1, 2)), "weights"),
        (lambda: catalog.linear_regression([[1.0, 2.0], [1.0]], [1, 2]), r"\(n, d\)"),
        (lambda: catalog.linear_regression([1.0, 2.0], [1, 2]), "flat list"),
        (lambda: torch_twin(catalog.two_layer_scalar(sp.Symbol("x0"), 1)), "symbolic"),
        (lambda: S.gd_input_jacobian(catalog.two_layer_scalar(), 0.1, 3), "out of range"),
    ],
)
def test_bad_declarations_raise_one_line_errors(build, match):
    with pytest.raises(BadInputError, match=match) as info:
        build()
    assert "\n" not in str(info.value)


def test_run_demo_refuses_unknown_names_with_the_list(tmp_path):
    with pytest.raises(BadInputError) as info:
        run_demo("no-such-demo", tmp_path)
    message = str(info.value)
    assert "no-such-demo" in message and all(name in message for name in DEMOS) and "\n" not in message


def test_demo_registry_is_descriptive():
    for name, info in DEMOS.items():
        assert isinstance(info, DemoInfo) and info.name == name
        assert info.title and info.description and "\n" not in info.description


def test_importing_the_package_loads_neither_sympy_nor_matplotlib():
    code = (
        "import sys, stability.toy as t; assert t.DEMOS; "
        "bad = [m for m in ('sympy', 'matplotlib') if m in sys.modules]; assert not bad, bad"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
