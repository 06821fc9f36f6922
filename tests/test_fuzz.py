"""Hostile input, generated: every bad checkpoint, command line and damaged run folder gets one line and a
refusal (exit 2 or the library's own error type), never a traceback, never code run from a file, and never
an analysis of altered weights; each case within bounded time and memory.

The fast tier runs a few hundred seeded cases; the slow tier (``make test-slow``) thousands. Reproduce a
tier with ``python -m pytest tests/test_fuzz.py -m slow``.
"""

from __future__ import annotations

import importlib
import math
import resource
import time
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from stability.analysis.run import open_weights
from stability.cli.app import app
from stability.data.spec import DataSpec
from stability.errors import BadInputError
from stability.models.spec import ModelSpec
from stability.training.checkpoint import load_checkpoint
from stability.training.spec import TrainSpec
from tests.fuzz_cases import checkpoint_cases, command_cases, saved, valid_dict

settings.register_profile("ci", max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("fast", max_examples=150, deadline=None)
settings.load_profile("fast")

MAX_SECONDS = 30.0


MAX_GROWTH_KB = 1024 * 1024  # 1 GB of peak resident memory above where the tier started


def _peak_kb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def run_file_cases(tmp_path, seed: int, count: int, limit: int | None = None) -> dict[str, int]:
    marker = tmp_path / "code-ran"
    cases = checkpoint_cases(seed, count, marker)
    if limit is not None:  # the fast tier: a seeded sample of the fixed cases, all the random ones
        cases = cases[-count:] + cases[: len(cases) - count][:: max(1, (len(cases) - count) // limit)]
    original = load_checkpoint_bytes(tmp_path, saved(valid_dict()))
    start_peak, tally = _peak_kb(), {"refused": 0, "loaded": 0}
    for i, case in enumerate(cases):
        path = tmp_path / f"case{i}.pt"
        path.write_bytes(case.data)
        t0 = time.perf_counter()
        try:
            weights = open_weights(path)
        except BadInputError as exc:
            text = str(exc)
            assert "\n" not in text and str(path) in text, (case.name, text)
            tally["refused"] += 1
        else:
            assert case.may_load, f"{case.name} was accepted"
            if case.name.startswith(("flip", "pickle")):  # a change the file absorbed: the same content
                ckpt = load_checkpoint(path)
                assert ckpt.to_dict()["digest"] == original, case.name
            assert weights.model is not None
            tally["loaded"] += 1
        assert time.perf_counter() - t0 < MAX_SECONDS, case.name
        assert not marker.exists(), f"{case.name} ran code"
        path.unlink()
    assert _peak_kb() - start_peak < MAX_GROWTH_KB
    tally["cases"] = len(cases)
    return tally


def load_checkpoint_bytes(tmp_path, data: bytes) -> str:
    path = tmp_path / "original.pt"
    path.write_bytes(data)
    return load_checkpoint(path).to_dict()["digest"]


def test_bad_checkpoints_fast_tier(tmp_path):
    tally = run_file_cases(tmp_path, seed=0, count=200, limit=200)
    assert tally["cases"] >= 300 and tally["refused"] >= 250, tally


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_bad_checkpoints_slow_tier(tmp_path, seed):
    tally = run_file_cases(tmp_path, seed=seed, count=600)
    assert tally["cases"] >= 1000, tally  # two seeds: over 2,000 files


runner = CliRunner()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "checkpoint.pt"
    path.write_bytes(saved(valid_dict()))
    return path


def run_command_cases(tmp_path, checkpoint, seed: int, count: int) -> int:
    cases = command_cases(seed, count, tmp_path, checkpoint)
    for case in cases:
        t0 = time.perf_counter()
        result = runner.invoke(app, list(case.args))
        assert result.exit_code == 2, (case.name, result.exit_code, result.output)
        assert result.exception is None or isinstance(result.exception, SystemExit), (case.name, result.exception)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:"), (case.name, result.stderr)
        assert any(name in lines[0] for name in case.names.split("|")), (case.name, lines[0])
        assert "Traceback" not in result.output
        assert time.perf_counter() - t0 < MAX_SECONDS, case.name
    return len(cases)


def test_bad_command_lines_fast_tier(tmp_path, checkpoint):
    assert run_command_cases(tmp_path, checkpoint, seed=0, count=0) >= 200


@pytest.mark.slow
def test_bad_command_lines_slow_tier(tmp_path, checkpoint):
    assert run_command_cases(tmp_path, checkpoint, seed=1, count=300) >= 400


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
                    max_leaves=6)  # fmt: skip


@pytest.mark.parametrize("cls", [DataSpec, ModelSpec, TrainSpec])
def test_any_json_in_any_spec_field_is_accepted_or_refused_in_one_line(cls):
    """The one validator per spec, property-based: whatever JSON a file or a flag holds, the spec is built
    with finite, in-range values, or refused with one BadInputError line; nothing else escapes."""
    names = [f for f in cls.__dataclass_fields__]

    @given(st.dictionaries(st.sampled_from(names), JSON, max_size=len(names)))
    def check(fields):
        try:
            spec = cls.from_dict(fields)
        except BadInputError as exc:
            assert "\n" not in str(exc)
            return
        for value in spec.to_dict().values():
            assert not (isinstance(value, float) and not math.isfinite(value))

    check()


def test_each_failure_class_of_the_issue_is_one_line(tmp_path):
    """The classes the issue found, one each, against the exact refusal."""
    base = valid_dict()
    cases = {
        "nan": ({**base, "state_dict": {**base["state_dict"], "fc1.weight": torch.full((4, 64), math.nan)}},
                "non-finite weights in fc1.weight"),
        "complex-nan": ({**base, "state_dict": {**base["state_dict"], "fc1.bias": torch.full((4,), math.nan, dtype=torch.complex64)}},
                        "weight fc1.bias is a torch.strided torch.complex64 tensor"),
        "epoch": ({**base, "epoch": -5}, "epoch must be an integer of at least 0"),
        "weight-decay": ({**base, "training": {**base["training"], "weight_decay": math.nan}}, "weight_decay"),
        "no-arch": ({**base, "model": {k: v for k, v in base["model"].items() if k != "arch"}}, "names no arch"),
        "no-dataset": ({**base, "data": {k: v for k, v in base["data"].items() if k != "dataset"}}, "names no dataset"),
        "widths": ({**base, "model": {**base["model"], "kwargs": {"widths": [8_000_000]}}}, "shape mismatch"),
    }  # fmt: skip
    from stability.training.checkpoint import seal

    for name, (obj, phrase) in cases.items():
        path = tmp_path / f"{name}.pt"
        torch.save(seal(obj), path)
        peak = _peak_kb()
        with pytest.raises(BadInputError, match=phrase):
            open_weights(path)
        assert _peak_kb() - peak < 256 * 1024, name  # refused before the 2 GB model of "widths" is built
    flipped = bytearray(saved(base))
    at = flipped.index(b"data/0") + 200  # inside the first tensor's record
    flipped[at] ^= 0xFF
    (tmp_path / "flip.pt").write_bytes(bytes(flipped))
    with pytest.raises(BadInputError, match="CRC-32|integrity|corrupt"):
        open_weights(tmp_path / "flip.pt")


def script_cases(tmp: Path) -> list[tuple[str, tuple[str, ...], str]]:
    """Bad options of the experiment scripts: (name, arguments, words one of which the error line names)."""
    a_file = tmp / "a-file"
    a_file.write_text("x")
    cases = [
        ("device", ("--device", "nope"), "--device"), ("device-absent", ("--device", "cuda:99"), "--device"),
        ("dataset", ("--dataset", "nope"), "--dataset"), ("dataset-empty", ("--dataset", ""), "--dataset"),
        ("out-file", ("--out", str(a_file)), "--out"), ("out-empty", ("--out", ""), "--out"),
        ("out-under-file", ("--out", str(a_file / "sub")), "--out"), ("out-long", ("--out", str(tmp / ("n" * 300))), "--out"),
        ("epochs-negative", ("--epochs", "-3"), "--epochs"), ("epochs-text", ("--epochs", "abc"), "--epochs"),
        ("seed-negative", ("--seed", "-1"), "--seed"), ("seed-huge", ("--seed", str(2**64)), "seed"),
        ("part", ("--part", "nope"), "part"), ("quick-and-smoke", ("--quick",), "--quick"),
        ("arch", ("--arch", "nope"), "architecture"), ("executor", ("--executor", "nope"), "--executor"),
        ("unknown-option", ("--no-such-option",), "--no-such-option"),
    ]  # fmt: skip
    return [(name, args if "--out" in args else (*args, "--out", str(tmp / f"out-{name}")), words)
            for name, args, words in cases]  # fmt: skip


@pytest.mark.parametrize("script", ["randomization", "memorize", "stability_tracking"])
def test_bad_experiment_script_options_are_one_line_before_any_work(tmp_path, script):
    module = importlib.import_module(f"experiments.{script}")
    for name, args, words in script_cases(tmp_path):
        result = runner.invoke(module.app, ["--smoke", *args])
        assert result.exit_code == 2, (script, name, result.exit_code, result.output)
        assert result.exception is None or isinstance(result.exception, SystemExit), (script, name, result.exception)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:"), (script, name, result.stderr)
        assert any(w in lines[0] for w in words.split("|")), (script, name, lines[0])
        assert not (tmp_path / f"out-{name}").exists(), (script, name, "wrote before refusing")
