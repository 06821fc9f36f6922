"""A model trained in plain PyTorch, analyzed from the command line (``--model package.module:factory`` and a
bare state_dict) and from Python (``stability.analyze``): the reported accuracy equals one computed here by
hand on the same samples, the preprocessing is the user's choice, and every bad input is one line, exit 2."""

from __future__ import annotations

import json
import sys
import textwrap

import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn
from typer.testing import CliRunner

import stability
from stability.analysis.options import AnalysisOptions
from stability.cli.app import app
from stability.data.bundle import load_data
from stability.data.spec import DataSpec

runner = CliRunner()

FACTORIES = textwrap.dedent(
    """
    from torch import nn

    def factory():
        return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))

    def narrow():
        return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))

    def deeper():
        return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10), nn.ReLU(), nn.Linear(10, 10))

    def shallow():
        return nn.Sequential(nn.Flatten(), nn.Linear(64, 32))

    def not_a_module():
        return {"weights": 1}

    def needs_args(width):
        return nn.Linear(64, width)

    NOT_CALLABLE = 3
    """
)


def plain_model() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Full-batch Adam on raw digits (pixels / 16), in plain PyTorch; the weights saved as a bare state_dict."""
    folder = tmp_path_factory.mktemp("own")
    digits = load_digits()
    x = torch.tensor(digits.data / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8)
    y = torch.tensor(digits.target, dtype=torch.int64)
    torch.manual_seed(0)
    model = plain_model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x[:1000]), y[:1000]).backward()
        opt.step()
    model.eval()
    torch.save(model.state_dict(), folder / "weights.pt")
    (folder / "own_models.py").write_text(FACTORIES)
    (folder / "broken_models.py").write_text("raise RuntimeError('this module fails on import')\n")
    sys.path.insert(0, str(folder))
    yield model, x, y, folder
    sys.path.remove(str(folder))


def _read(path):
    return json.loads(path.read_text())


def cli(*args: str):
    return runner.invoke(app, ["analyze", "--no-progress", *args])


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return (model(x).argmax(1) == y).double().mean().item()


def test_cli_analyzes_a_plain_pytorch_model_on_raw_pixels(trained, tmp_path):
    model, x_all, _, folder = trained
    args = [str(folder / "weights.pt"), "--model", "own_models:factory", "--dataset", "digits", "--max-samples", "0",
            "--no-curvature", "--json", str(tmp_path / "raw.json")]  # fmt: skip
    result = cli(*args, "--preprocess", "none")
    assert result.exit_code == 0, result.output
    report = _read(tmp_path / "raw.json")
    assert report["model_source"] == "own_models:factory" and report["data"]["preprocess"] == "none"
    # The same samples, from the data pipeline; each is a raw digits image / 16 (checked against sklearn).
    train = load_data(DataSpec(dataset="digits", preprocess="none")).train
    rows = {tuple(r.tolist()) for r in x_all.flatten(1)}
    assert all(tuple(r.tolist()) in rows for r in train.x.flatten(1))
    assert report["splits"]["train"]["n"] == len(train)
    assert report["splits"]["train"]["accuracy"] == pytest.approx(accuracy(model, train.x, train.y), abs=1e-12)

    # Standardized inputs are not what the model was trained on: a different accuracy, and it says so.
    result = cli(*args[:-1], str(tmp_path / "std.json"), "--preprocess", "standardize")
    assert result.exit_code == 0, result.output
    std = _read(tmp_path / "std.json")
    assert std["data"]["preprocess"] == "standardize"
    assert std["splits"]["train"]["accuracy"] != pytest.approx(report["splits"]["train"]["accuracy"], abs=1e-3)
    assert "--preprocess standardize" in result.stderr


def test_python_entry_needs_no_spec_or_checkpoint(trained):
    model, x, y, _ = trained
    report = stability.analyze(model, x[:1000], y[:1000], x_test=x[1000:], y_test=y[1000:], curvature=False)
    train, test = report.analysis.splits["train"], report.analysis.splits["test"]
    assert (train.n, test.n) == (1000, 797)
    assert train.accuracy == pytest.approx(accuracy(model, x[:1000], y[:1000]), abs=1e-12)
    assert test.accuracy == pytest.approx(accuracy(model, x[1000:], y[1000:]), abs=1e-12)
    assert train.loss == pytest.approx(nn.functional.cross_entropy(model(x[:1000]), y[:1000]).item(), rel=1e-5)
    assert report.model is None and report.data is None and report.source == "Sequential"
    assert report.to_json()["splits"]["train"]["accuracy"] == train.accuracy


def test_python_entry_with_curvature_and_a_train_split_alone(trained):
    model, x, y, _ = trained
    report = stability.analyze(model, x[:200], y[:200], lr=0.01, batch_size=0,
                               options=AnalysisOptions(noise_samples=2))  # fmt: skip
    assert list(report.analysis.splits) == ["train"]
    assert report.curvature is not None


@pytest.mark.parametrize(
    "call, phrase",
    [
        (dict(model="not a module"), "model must be a torch.nn.Module, got str"),
        (dict(x=torch.zeros(5, 64, dtype=torch.int64)), "x must be a floating-point tensor"),
        (dict(y=torch.zeros(4, dtype=torch.int64)), "y must be an int64 tensor of shape (5,)"),
        (dict(x_test=torch.zeros(3, 1, 8, 8)), "x_test and y_test go together"),
        (dict(x=torch.zeros(5, 1, 9, 9)), "does not accept x of shape (1, 9, 9)"),
        (dict(lr=None, curvature=True), "lr must be given"),
    ],
)
def test_python_entry_refuses_bad_input_in_one_line(call, phrase):
    args = {"model": plain_model(), "x": torch.zeros(5, 1, 8, 8), "y": torch.zeros(5, dtype=torch.int64),
            "curvature": False, **call}  # fmt: skip
    with pytest.raises(stability.BadInputError) as info:
        stability.analyze(args.pop("model"), args.pop("x"), args.pop("y"), **args)
    assert phrase in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    "args, phrase",
    [
        (["--model", "own_models"], "is not of the form package.module:factory"),
        (["--model", "no_such_module_here:factory"], "cannot import no_such_module_here"),
        (["--model", "broken_models:factory"], "importing broken_models raised RuntimeError: this module fails on import"),
        (["--model", "own_models:missing"], "has no attribute 'missing'"),
        (["--model", "own_models:NOT_CALLABLE"], "has a non-callable 'NOT_CALLABLE'"),
        (["--model", "own_models:not_a_module"], "returned a dict, not a torch.nn.Module"),
        (["--model", "own_models:needs_args"], "calling needs_args() raised TypeError"),
        (["--model", "own_models:narrow"], "shape mismatch 1.weight (32, 64) vs (16, 64)"),
        (["--model", "own_models:deeper"], "missing 5.weight"),
        (["--model", "own_models:shallow"], "unexpected 3.weight"),
        (["--model", "own_models:factory", "--arch", "mlp"], "--model (your factory) and --arch (a registry name) both name"),
        (["--model", "own_models:factory", "--dataset", "mnist1d"], "does not accept mnist1d inputs of shape (1, 40)"),
        (["--model", "own_models:factory", "--preprocess", "sharpen"], "--preprocess 'sharpen' is not one of"),
    ],
)
def test_cli_bad_own_model_is_one_line_and_exit_2(trained, args, phrase):
    _, _, _, folder = trained
    call = [str(folder / "weights.pt"), "--dataset", "digits", "--no-curvature", *args]
    if "--dataset" in args:
        call = [str(folder / "weights.pt"), "--no-curvature", *args]
    result = cli(*call)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("note:")]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert phrase in lines[0]
    assert "Traceback" not in result.output


def test_a_bare_state_dict_without_an_architecture_names_both_options(trained):
    _, _, _, folder = trained
    result = cli(str(folder / "weights.pt"), "--dataset", "digits", "--no-curvature")
    assert result.exit_code == 2 and "--model" in result.stderr and "--arch" in result.stderr


def test_a_whole_pickled_plain_pytorch_model_is_analyzed_with_unsafe_pickle(trained, tmp_path):
    """`torch.save(model)` (the whole nn.Module): refused by default, analyzed with --unsafe-pickle and
    --dataset, curvature and update-input sensitivity included, with the accuracy computed here by hand."""
    model, *_ = trained
    path = tmp_path / "whole.pt"
    torch.save(model, path)
    refused = cli(str(path), "--dataset", "digits")
    assert refused.exit_code == 2 and "--unsafe-pickle" in refused.stderr
    no_data = cli(str(path), "--unsafe-pickle")
    assert no_data.exit_code == 2 and "--dataset" in no_data.stderr
    result = cli(str(path), "--unsafe-pickle", "--dataset", "digits", "--preprocess", "none", "--lr", "0.01",
                 "--max-samples", "0", "--curvature-samples", "200", "--nonuniformity-subset", "32",
                 "--json", str(tmp_path / "whole.json"))  # fmt: skip
    assert result.exit_code == 0, result.output
    report = _read(tmp_path / "whole.json")
    train = load_data(DataSpec(dataset="digits", preprocess="none")).train
    assert report["model_source"] == "a pickled Sequential"
    assert report["splits"]["train"]["accuracy"] == pytest.approx(accuracy(model, train.x, train.y), abs=1e-12)
    assert report["bounds"]["update_input_sensitivity"]["gauss_newton_fro"]["n"] == 200


@pytest.mark.parametrize("failures", [1, 2])
def test_update_input_sensitivity_survives_an_eigensolver_that_fails(trained, monkeypatch, failures):
    """`eigh` failing to converge (float32 ill-conditioning): retried in float64 (one failure) or with a
    relative jitter of 1e-12 (two), the result equals the unpatched one to float32 accuracy."""
    from stability.sensitivity.one_step import update_input_sensitivity

    model, x, y, _ = trained
    reference = update_input_sensitivity(model, x[:40], y[:40], lr=0.1, loss="cross-entropy")
    eigh = torch.linalg.eigh
    budget = {"left": 0}

    def flaky(m, *args, **kwargs):
        if budget["left"] > 0:
            budget["left"] -= 1
            raise torch.linalg.LinAlgError("linalg.eigh: The algorithm failed to converge")
        budget["left"] = failures  # every next decomposition fails `failures` times first
        return eigh(m, *args, **kwargs)

    budget["left"] = failures
    monkeypatch.setattr(torch.linalg, "eigh", flaky)
    patched = update_input_sensitivity(model, x[:40], y[:40], lr=0.1, loss="cross-entropy")
    for name in ("gauss_newton_fro", "gauss_newton_spectral", "param_factor"):
        assert torch.allclose(getattr(patched, name), getattr(reference, name), rtol=1e-4, atol=1e-10), name
