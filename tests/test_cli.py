"""The command line: exit codes and one-line errors for bad input, and the train command end to end."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from stability.cli.app import app
from stability.training.checkpoint import load_checkpoint

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args))


def one_error_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error:")
    return lines[0]


def test_train_writes_a_checkpoint(tmp_path):
    out = tmp_path / "run"
    result = run("train", "--out", str(out), "--epochs", "2", "--n-train", "200", "--corruption", "random-labels",
                 "--arch-kwargs", '{"widths": [16]}', "--no-progress")  # fmt: skip
    assert result.exit_code == 0, result.output
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert ckpt.data.corruption == "random-labels" and ckpt.model.kwargs == {"widths": [16]}
    assert ckpt.epoch == 2


@pytest.mark.parametrize(
    "args, phrase",
    [
        (["--arch", "transformer-xxl"], "transformer-xxl"),
        (["--arch-kwargs", "{widths: 3}"], "--arch-kwargs must be a JSON object"),
        (["--arch-kwargs", '{"depth_of_field": 3}'], "depth_of_field"),
        (["--corruption", "upside-down"], "--corruption 'upside-down' is not one of"),
        (["--dataset", "mnist", "--data-root", "/nonexistent/place"], "/nonexistent/place"),
        (["--objective", "split"], "--n-heldout"),
        (["--split-start", "5", "--split-stop", "2"], "--split-start <= --split-stop"),
        (["--lr", "-1"], "--lr must be positive"),
        (["--n-test", "0"], "--n-test must be a positive integer"),
        (["--n-train", "100000"], "--n-train=100000"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, args, phrase):
    result = run("train", "--out", str(tmp_path / "run"), "--epochs", "1", "--no-progress", *args)
    assert result.exit_code == 2, result.output
    assert phrase in one_error_line(result)


def test_existing_run_is_not_overwritten(tmp_path):
    args = ["train", "--out", str(tmp_path), "--epochs", "1", "--n-train", "100", "--no-progress"]
    assert run(*args).exit_code == 0
    result = run(*args)
    assert result.exit_code == 2 and "--resume" in one_error_line(result)
    assert run(*args, "--resume").exit_code == 0


def test_console_script_is_installed():
    proc = subprocess.run([sys.executable, "-m", "stability.cli", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "train" in proc.stdout and "quickstart" in proc.stdout


def test_the_command_line_starts_without_the_heavy_modules():
    """`import stability.cli` (what `stability --help` runs) loads neither torch nor sympy, matplotlib, scipy,
    sklearn, rich.progress or any measure; the commands import them when they run."""
    heavy = ["torch", "sympy", "matplotlib", "scipy", "sklearn", "rich.progress", "stability.sensitivity",
             "stability.curvature", "stability.dynamics", "stability.analysis.splits", "stability.analysis.curvature",
             "stability.analysis.report", "stability.toy"]  # fmt: skip
    code = f"import sys, stability.cli; print([m for m in {heavy!r} if m in sys.modules])"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
    listing = subprocess.run([sys.executable, "-m", "stability.cli", "--help"], capture_output=True, text=True)
    assert listing.returncode == 0 and "analyze" in listing.stdout and "train" in listing.stdout
    # A wrong path is refused (one line, exit 2) before any of them loads.
    refuse = (f"import sys; from stability.cli.app import app; import stability.cli\n"
              f"try:\n    app(['analyze', 'no-such.pt'])\nexcept SystemExit as e:\n"
              f"    print(e.code, [m for m in {heavy!r} if m in sys.modules])")
    proc = subprocess.run([sys.executable, "-c", refuse], capture_output=True, text=True)
    assert proc.stdout.strip() == "2 []", proc.stdout + proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "no such file" in proc.stderr


def test_demo_lists_and_runs_with_closed_forms_in_its_json(tmp_path):
    listing = run("demo", "--list")
    assert listing.exit_code == 0 and "tanh-two-point" in listing.stdout and "quartic" in listing.stdout
    result = run("demo", "tanh-two-point", "--out", str(tmp_path), "--json", str(tmp_path / "d.json"))
    assert result.exit_code == 0, result.output
    import json
    import math

    derived = json.loads((tmp_path / "d.json").read_text())["derived"]
    assert derived["min_sharpness"] == pytest.approx(2 * math.sqrt(2) - 2, rel=1e-12)
    assert derived["max_stable_lr"] == pytest.approx(1 + math.sqrt(2), rel=1e-12)
    assert any(p.suffix == ".png" for p in (tmp_path / "tanh-two-point").iterdir())
    bad = run("demo", "no-such-toy", "--out", str(tmp_path))
    assert bad.exit_code == 2 and "no-such-toy" in one_error_line(bad)
