"""proofs/: every statement verifies, each file has the required shape, and a wrong closed form is caught."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys
from pathlib import Path

import pytest
import sympy as sp

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # proofs/ lives at the repository root, next to stability/
    sys.path.insert(0, str(ROOT))

import proofs  # noqa: E402
from proofs import _common  # noqa: E402
from stability.toy import facts  # noqa: E402


def test_every_proof_file_is_listed():
    files = {p.stem for p in (ROOT / "proofs").glob("*.py") if not p.stem.startswith("_")}
    assert files == set(proofs.STATEMENTS)


# One statement is verified by running its script, as a reader would; the others in process. Either way each
# proof runs once per suite.
RUN_AS_SCRIPT = "sgd_wu_ma_e"


@pytest.mark.parametrize("name", proofs.STATEMENTS)
def test_statement_has_the_shape_of_a_proof(name):
    module = importlib.import_module(f"proofs.{name}")
    assert module.__doc__ and len(module.__doc__.strip().splitlines()) >= 5, "the statement lives in the docstring"
    assert "Statement" in module.__doc__
    assert list(inspect.signature(module.verify).parameters) == ["verbose"]
    assert 'if __name__ == "__main__":' in inspect.getsource(module)


@pytest.mark.parametrize("name", [s for s in proofs.STATEMENTS if s != RUN_AS_SCRIPT])
def test_statement_verifies(name):
    importlib.import_module(f"proofs.{name}").verify()


def test_a_wrong_closed_form_is_caught(monkeypatch):
    monkeypatch.setitem(facts.TANH_TWO_POINT, "min_sharpness", 2 * sp.sqrt(2) - sp.Rational(199, 100))
    with pytest.raises(AssertionError, match="min sharpness"):
        importlib.import_module("proofs.t4_tanh_two_point").verify()


def test_a_wrong_imbalance_law_is_caught(monkeypatch):
    wrong = 1 - facts.ETA * facts.X0**2 * facts.R**2  # η instead of η²
    monkeypatch.setitem(facts.TWO_LAYER_SCALAR, "imbalance_factor", wrong)
    with pytest.raises(AssertionError, match="imbalance"):
        importlib.import_module("proofs.t1_two_layer_scalar").verify()


def test_checks_raise_on_mismatch():
    x = sp.Symbol("x")
    with pytest.raises(AssertionError, match="demo"):
        _common.check_zero(sp.sin(x) ** 2 + sp.cos(x) ** 2 - 1 + x, "demo")
    _common.check_zero(sp.sin(x) ** 2 + sp.cos(x) ** 2 - 1, "identity")
    with pytest.raises(AssertionError, match="max error"):
        _common.check_close([1.0, 2.0], [1.0, 2.0 + 1e-9], "close")
    with pytest.raises(AssertionError, match="shapes"):
        _common.check_close([1.0], [1.0, 2.0], "shape")


def test_running_a_proof_prints_its_steps_and_verified():
    result = subprocess.run(
        [sys.executable, "-m", f"proofs.{RUN_AS_SCRIPT}"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[-1] == "verified" and lines[0].startswith("[1] ")
