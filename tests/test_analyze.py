"""`stability analyze`: the report's numbers against independent computations, the JSON schema, the
comparison of several checkpoints, every bad-input case, and the science check of Novak et al. (2018)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from typer.testing import CliRunner

from stability.analysis.options import AnalysisOptions
from stability.analysis.splits import MEASURES, analyze_model
from stability.cli.app import app
from stability.data.bundle import load_data
from stability.data.spec import DataSpec
from stability.models.spec import ModelSpec
from stability.training.checkpoint import build_model_from_checkpoint, load_checkpoint, seal
from stability.training.spec import TrainSpec
from stability.training.train import train

runner = CliRunner()
SMALL = ModelSpec(arch="mlp", kwargs={"widths": [32]})


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two short runs on digits, one with partially corrupted labels."""
    root = tmp_path_factory.mktemp("runs")
    spec = TrainSpec(optimizer="adam", lr=3e-3, epochs=3, batch_size=64)
    clean = train(SMALL, DataSpec(n_train=300, n_test=120), spec, root / "clean")
    noisy = train(SMALL, DataSpec(n_train=300, n_test=120, corruption="partial-labels", corruption_prob=0.5),
                  spec, root / "noisy")  # fmt: skip
    return clean.checkpoint_path, noisy.checkpoint_path


def analyze(*args: str):
    return runner.invoke(app, ["analyze", "--no-progress", *args])


def test_report_numbers_match_independent_computations(runs, tmp_path):
    _, noisy = runs
    result = analyze(str(noisy), "--json", str(tmp_path / "r.json"), "--max-samples", "50")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["schema"] == "stability-analysis" and report["schema_version"] == 4
    ckpt = load_checkpoint(noisy)
    model = build_model_from_checkpoint(ckpt)
    data = load_data(ckpt.data)
    train_split = report["splits"]["train"]
    assert train_split["n"] == 50 and train_split["n_total"] == 300
    # The same seeded subset, recomputed by hand with a per-sample autograd loop.
    idx = torch.randperm(300, generator=torch.Generator().manual_seed(0))[:50].sort().values
    x, y, y_true = data.train.x[idx], data.train.y[idx], data.train.y_true[idx]
    logits = model(x).detach()
    assert train_split["accuracy"] == pytest.approx((logits.argmax(1) == y).double().mean().item(), abs=1e-12)
    assert train_split["accuracy_true"] == pytest.approx((logits.argmax(1) == y_true).double().mean().item(), abs=1e-12)
    assert train_split["loss"] == pytest.approx(torch.nn.functional.cross_entropy(logits, y).item(), rel=1e-5)
    norms = []
    for xi in x:
        xi = xi.clone().requires_grad_(True)
        out = model(xi[None])[0]
        rows = [torch.autograd.grad(out[c], xi, retain_graph=True)[0] for c in range(out.numel())]
        norms.append(torch.stack(rows).norm().item())
    norms = torch.tensor(norms, dtype=torch.float64)
    assert train_split["measures"]["jacobian_frobenius"]["mean"] == pytest.approx(norms.mean().item(), rel=1e-5)
    assert train_split["measures"]["jacobian_frobenius"]["max"] == pytest.approx(norms.max().item(), rel=1e-5)
    assert report["splits"]["test"]["accuracy_true"] is None  # test labels are never corrupted
    gap = report["generalization_gap"]["accuracy"]
    assert gap == pytest.approx(train_split["accuracy"] - report["splits"]["test"]["accuracy"])
    for key in MEASURES:
        assert set(train_split["measures"][key]) >= {"mean", "median", "max", "q05", "q95"}


@pytest.mark.slow
def test_several_checkpoints_in_one_table_and_figures(runs, tmp_path):
    clean, noisy = runs
    result = analyze(str(clean), str(noisy), "--max-samples", "40", "--plots", str(tmp_path / "fig"),
                     "--json", str(tmp_path / "r.json"))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "clean" in result.output and "noisy" in result.output
    reports = json.loads((tmp_path / "r.json").read_text())
    assert [r["data"]["corruption"] for r in reports] == ["true", "partial-labels"]
    pngs = sorted(p.name for p in (tmp_path / "fig").iterdir())
    assert len(pngs) == 10 and all(p.startswith(("clean-", "noisy-")) for p in pngs)
    assert {p.split("-", 1)[1] for p in pngs} >= {"spectral_density.png", "eigenvalues_vs_lr.png", "jacobian_hist.png"}


def test_bare_state_dict_needs_and_uses_arch_and_dataset(runs, tmp_path):
    clean, _ = runs
    sd_path = tmp_path / "weights.pt"
    torch.save(load_checkpoint(clean).state_dict, sd_path)
    result = analyze(str(sd_path), "--max-samples", "20")
    assert result.exit_code == 2 and "--arch" in result.stderr
    args = [str(sd_path), "--max-samples", "20", "--arch", "mlp", "--arch-kwargs", '{"widths": [32]}',
            "--dataset", "digits", "--json", str(tmp_path / "r.json")]  # fmt: skip
    result = analyze(*args)
    assert result.exit_code == 2 and "--lr" in result.stderr  # no training spec to take the step size from
    result = analyze(*args, "--lr", "0.01", "--batch-size", "64")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "r.json").read_text())["splits"]["test"]["n"] == 20


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (type(self.marker).touch, (self.marker,))


def _bad_files(tmp_path, clean):
    good = torch.load(clean, weights_only=True)
    files = {}
    files["missing"] = tmp_path / "nope.pt"
    (files.setdefault("random", tmp_path / "random.pt")).write_bytes(torch.randint(0, 256, (4096,), dtype=torch.uint8,
                                                                     generator=torch.Generator().manual_seed(0)).numpy().tobytes())  # fmt: skip
    data = clean.read_bytes()
    (files.setdefault("truncated", tmp_path / "trunc.pt")).write_bytes(data[: len(data) // 3])
    torch.save({"format": "stability-checkpoint", "x": _RunsCode(tmp_path / "pwned")}, tmp_path / "evil.pt")
    files["pickle"] = tmp_path / "evil.pt"
    unknown = dict(good, model=dict(good["model"], arch="resnet-9000"))
    torch.save(seal(unknown), files.setdefault("unknown_arch", tmp_path / "arch.pt"))
    misfit = dict(good, model=dict(good["model"], kwargs={"widths": [64]}))
    torch.save(seal(misfit), files.setdefault("misfit", tmp_path / "misfit.pt"))
    nan_sd = {k: v.clone() for k, v in good["state_dict"].items()}
    next(iter(nan_sd.values())).fill_(math.nan)
    torch.save(seal(dict(good, state_dict=nan_sd)), files.setdefault("nan", tmp_path / "nan.pt"))
    return files


@pytest.mark.parametrize(
    "case, phrase",
    [
        ("missing", "no such file"),
        ("random", "not a readable checkpoint"),
        ("truncated", "not a readable checkpoint"),
        ("pickle", "--unsafe-pickle"),
        ("unknown_arch", "resnet-9000"),
        ("misfit", "does not fit the architecture"),
        ("nan", "non-finite weights"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_runs_nothing(runs, tmp_path, case, phrase):
    clean, _ = runs
    path = _bad_files(tmp_path, clean)[case]
    result = analyze(str(path), "--max-samples", "10")
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error:") and phrase in lines[0], result.stderr
    assert not (tmp_path / "pwned").exists()


def test_a_bad_file_fails_before_any_analysis(runs, tmp_path):
    clean, _ = runs
    result = analyze(str(clean), str(tmp_path / "nope.pt"), "--json", str(tmp_path / "r.json"))
    assert result.exit_code == 2 and not (tmp_path / "r.json").exists()


@pytest.mark.slow
def test_random_labels_make_models_more_input_sensitive(tmp_path):
    """Novak et al. (2018): the input-output Jacobian norm at test points is larger for a network that
    memorized random labels than for the same network trained on the true labels (both fit ~100%).
    Novak et al. measure the Jacobian of the softmax output; the logit Jacobian is reported beside it."""
    model = ModelSpec(arch="mlp", kwargs={"widths": [512]})
    spec = TrainSpec(optimizer="adam", lr=3e-3, batch_size=128, epochs=150)
    results = {}
    for corruption in ("true", "random-labels"):
        run = train(model, DataSpec(corruption=corruption), spec, tmp_path / corruption)
        assert run.final["train_acc"] > 0.99
        data = load_data(DataSpec(corruption=corruption))
        results[corruption] = analyze_model(run.model, data, options=AnalysisOptions(max_samples=None))
    test_true = results["true"].splits["test"].measures["jacobian_frobenius_softmax"]
    test_random = results["random-labels"].splits["test"].measures["jacobian_frobenius_softmax"]
    assert test_random["mean"] > 5 * test_true["mean"], (test_random, test_true)
    assert test_random["median"] > 5 * test_true["median"]


def test_curvature_section_matches_a_dense_hessian(tmp_path):
    """Sharpness, trace and the GD verdict in the JSON against torch.func.hessian on the same subset."""
    from torch.func import functional_call, hessian

    from stability.curvature.products import seeded_subset

    model_spec = ModelSpec(arch="mlp", kwargs={"widths": [6]})
    run = train(model_spec, DataSpec(n_train=200), TrainSpec(lr=0.05, epochs=5, batch_size=50), tmp_path / "run")
    result = analyze(str(run.checkpoint_path), "--max-samples", "20", "--curvature-samples", "150",
                     "--json", str(tmp_path / "r.json"))  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "r.json").read_text())
    curv = report["curvature"]
    model = build_model_from_checkpoint(load_checkpoint(run.checkpoint_path)).double()
    data = load_data(DataSpec(n_train=200))
    idx = seeded_subset(200, 150, 0)
    x, y = data.train.x[idx].double(), data.train.y[idx]
    params = {k: v.detach() for k, v in model.named_parameters()}
    names = list(params)

    def loss(flat):
        chunks = dict(zip(names, flat.split([p.numel() for p in params.values()])))
        ps = {k: chunks[k].reshape(params[k].shape) for k in names}
        return torch.nn.functional.cross_entropy(functional_call(model, ps, (x,)), y)

    flat = torch.cat([p.reshape(-1) for p in params.values()])
    H = hessian(loss)(flat)
    eig = torch.linalg.eigvalsh(H)
    assert curv["n_evaluated"] == 150
    top = curv["hessian"]["top"]
    assert top["converged"]
    assert top["eigenvalues"] == pytest.approx(eig.flip(0)[:3].tolist(), rel=1e-3)
    trace = curv["hessian"]["trace"]
    # a ReLU MLP is linear in each parameter, so diag H = diag G and tr H is the exact tr G (float32 model)
    assert trace["method"].startswith("exact") and trace["stderr"] == 0
    assert trace["estimate"] == pytest.approx(H.trace().item(), rel=1e-5)
    # trained with SGD and momentum 0.9 (the spec's default): heavy ball's threshold 2(1 + β)/η, not 2/η
    verdict = curv["linear_stability"]
    assert verdict["setting"]["kind"] == "heavy-ball" and verdict["setting"]["momentum"] == 0.9
    assert verdict["threshold"] == pytest.approx(2 * 1.9 / 0.05)
    assert verdict["sharpness"] == pytest.approx(eig.max().item(), rel=1e-3)
    if eig.min().item() < -1e-2 * eig.max().item():
        assert verdict["stable"] is False and "saddle" in verdict["note"]
    else:
        assert verdict["stable"] == (eig.max().item() <= 2 * 1.9 / 0.05)
    assert {s["kind"] for s in (curv["sgd"]["necessary"], curv["sgd"]["sufficient"], curv["sgd"]["exact"])} == {
        "necessary", "sufficient", "exact"}
    assert curv["sgd"]["n_evaluated"] == 200 and curv["nonuniformity"]["n_evaluated"] == 200
    assert curv["applicability"]["loss"]["holds"] is False  # cross-entropy: a statement about the linearization
    assert report["bounds"]["first_layer"]["holds"] in (True, False)
    assert report["bounds"]["first_layer"]["lhs"] <= report["bounds"]["first_layer"]["rhs"] * (1 + 1e-6)


def test_a_report_of_a_model_not_written_by_train_has_no_specs():
    """A plain nn.Module: the report holds no model, data or training spec, only where the model came from."""
    from rich.console import Console

    from stability.analysis.report import Report, comparison_table

    data = load_data(DataSpec(n_train=40, n_test=20))
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 16), torch.nn.Tanh(), torch.nn.Linear(16, 10))
    analysis = analyze_model(model, data, options=AnalysisOptions(max_samples=10, noise_samples=2))
    report = Report(source="weights.pt", analysis=analysis, model_source="mypkg.nets:small")
    out = json.loads(json.dumps(report.to_json()))
    assert out["model"] is None and out["data"] is None and out["training"] is None and out["curvature"] is None
    assert out["model_source"] == "mypkg.nets:small" and out["checkpoint"] == "weights.pt"
    assert out["splits"]["test"]["n"] == 10
    console = Console(record=True, width=200)
    console.print(comparison_table([report]))
    text = console.export_text()
    assert "weights.pt" in text and "corruption" in text
    # Monte Carlo measures carry the standard error of their mean, recomputed here from the same seeded draws
    from stability.analysis.options import AnalysisOptions as Opts
    from stability.sensitivity.noise import noise_sensitivity

    split = analysis.splits["train"]
    idx = torch.randperm(40, generator=torch.Generator().manual_seed(0))[:10].sort().values
    again = noise_sensitivity(model, data.train.x[idx], sigma=Opts().sigma, num_probes=2, generator=0)
    se = float(again.stderr.double().pow(2).sum().sqrt() / 10)
    assert split.evidence["noise_sensitivity"]["stderr_of_mean"] == pytest.approx(se, rel=1e-6)
    assert split.measures["noise_sensitivity"]["mean"] == pytest.approx(float(again.values.mean()), rel=1e-6)
    row = next(line for line in text.splitlines() if "E‖Δf‖/σ" in line)
    assert row.count("±") == 2  # train and test


def disjoint_from(part: torch.Tensor, n: int, size: int) -> torch.Tensor:
    """``size`` seeded samples of those not in ``part`` (the second subset ``analyze_curvature`` draws)."""
    from stability.curvature.products import seeded_subset

    rest = torch.tensor([i for i in range(n) if i not in set(part.tolist())])
    return rest[seeded_subset(rest.numel(), size, 1)]


def dense_nonuniformity(model, split, idx: torch.Tensor, loss: str) -> float:
    """``s = sqrt(λ_max((1/m) Σ_i H_i² − H²))`` from dense per-sample Hessians on samples ``idx``."""
    from cases import dense_curvature

    hs = torch.stack([dense_curvature(model, split.x[i:i + 1].double(), split.y[i:i + 1], loss) for i in idx.tolist()])
    H = hs.mean(0)
    return float(torch.linalg.eigvalsh((hs @ hs).mean(0) - H @ H)[-1]) ** 0.5


@pytest.mark.parametrize("loss", ["cross-entropy", "bounded-cross-entropy"])
def test_curvature_analysis_uses_the_training_loss_and_skips_what_needs_convexity(loss):
    """Each section against a dense float64 reference of the loss the model was trained with; a loss not
    convex in the outputs has no Gauss-Newton section and no first-layer bound, and the note says so."""
    from cases import dense_curvature

    from stability.analysis.curvature import analyze_curvature
    from stability.analysis.options import CurvatureOptions
    from stability.curvature.products import seeded_subset
    from stability.sensitivity.fixed_point import fixed_point_displacement
    from stability.serialize import to_json

    data = load_data(DataSpec(n_train=60, n_test=20))
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 8), torch.nn.Tanh(), torch.nn.Linear(8, 10))
    model = model.double()
    options = CurvatureOptions(subset=40, top_k=2, tol=1e-9, max_iter=300, trace_probes=8, density_probes=2,
                               density_steps=5, nonuniformity_subset=10)  # fmt: skip
    c = analyze_curvature(model, data.train, loss=loss, lr=0.1, batch_size=16, options=options)
    idx = seeded_subset(60, 40, 0)
    x, y = data.train.x[idx].double(), data.train.y[idx]
    exact = torch.linalg.eigvalsh(dense_curvature(model, x, y, loss))
    scale = float(exact.abs().max())
    assert c.loss == loss and c.n_evaluated == 40 and c.hessian.top.converged
    torch.testing.assert_close(c.hessian.top.eigenvalues, exact.flip(0)[:2], rtol=1e-7, atol=1e-9 * scale)
    assert float(c.hessian.bottom.eigenvalues[0]) == pytest.approx(float(exact[0]), abs=1e-7 * scale)
    assert c.linear_stability.sharpness == c.hessian.sharpness and c.linear_stability.threshold == pytest.approx(20.0)
    assert c.linear_stability.setting.kind == "gd"
    # a subset for s was asked: s, H and the SGD statements share those 10 samples (n stays 60 for the noise
    # factor), and s is also reported on 10 disjoint samples
    assert c.sgd.n == 60 and c.sgd.batch_size == 16 and c.sgd.n_evaluated == c.nonuniformity.n_evaluated == 10
    part = seeded_subset(60, 10, 0)
    on_part = torch.linalg.eigvalsh(dense_curvature(model, data.train.x[part].double(), data.train.y[part], loss))
    assert c.sgd.necessary.value == pytest.approx(0.1 * float(on_part[-1]), rel=1e-6)
    other = c.nonuniformity_disjoint
    assert other is not None and other.n_evaluated == 10 and f"disjoint {other.n_evaluated}" in c.note
    assert other.s == pytest.approx(dense_nonuniformity(model, data.train, disjoint_from(part, 60, 10), loss), rel=1e-6)
    assert c.nonuniformity.s == pytest.approx(dense_nonuniformity(model, data.train, part, loss), rel=1e-6)
    every = CurvatureOptions(subset=40, top_k=1, tol=1e-9, max_iter=300, trace_probes=2, density_probes=1,
                             density_steps=2, fixed_point_samples=0)  # fmt: skip
    full = analyze_curvature(model, data.train, loss=loss, lr=0.1, batch_size=16, options=every)
    assert full.sgd.n_evaluated == full.nonuniformity.n_evaluated == 60 and full.nonuniformity_disjoint is None
    assert full.bounds.fixed_point is None
    body = to_json(c)
    assert body["hessian"]["sharpness"] == c.hessian.sharpness and "bounds" not in body and "density" not in body
    bounds = to_json(c.bounds)
    if loss == "bounded-cross-entropy":
        assert c.ggn is None and c.bounds.first_layer is None and bounds["first_layer"] is None
        assert "not convex in the outputs" in c.note and body["ggn"] is None
    else:
        ggn = torch.linalg.eigvalsh(dense_curvature(model, x, y, loss, "ggn"))
        assert c.ggn.sharpness == pytest.approx(float(ggn[-1]), rel=1e-7)
        assert bounds["first_layer"]["lhs"] <= bounds["first_layer"]["rhs"] * (1 + 1e-9)
    assert set(bounds["update_input_sensitivity"]) == {"lr", "gauss_newton_fro", "gauss_newton_spectral",
                                                       "param_factor", "input_factor", "product_bound"}
    # the fixed point's displacement on the default seeded samples, as the library computes it, beside one GD step
    fixed, m = c.bounds.fixed_point, options.fixed_point_samples
    direct = fixed_point_displacement(model, data.train.x, data.train.y, loss=loss, lr=0.1, samples=m, seed=0,
                                      tol=1e-9, max_iter=options.fixed_point_iter)  # fmt: skip
    assert fixed.result.num_evaluated == m and torch.equal(fixed.result.indices, seeded_subset(60, m, 0))
    assert fixed.displacement_fro["mean"] == pytest.approx(float(direct.displacement_fro.mean()), rel=1e-9)
    assert fixed.one_step_fro["mean"] == pytest.approx(float(direct.one_step_fro.mean()), rel=1e-9)
    assert set(bounds["fixed_point"]) == {"displacement_fro", "displacement_spectral", "one_step_fro",
                                          "one_step_spectral", "result"}
    assert bounds["fixed_point"]["result"]["num_evaluated"] == m
