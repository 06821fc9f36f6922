"""make gpu-check: the fit-noise timing's arithmetic, and the whole report as its tiny CPU run writes it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks.bench_fit_noise import FitNoise, noise_bundle

ROOT = Path(__file__).resolve().parents[1]


def test_noise_is_standard_normal_images_with_uniform_random_labels():
    data = noise_bundle(4000, seed=0, device=torch.device("cpu"))
    x, y = data.train.x, data.train.y
    assert x.shape == (4000, 3, 32, 32) and data.input_shape == (3, 32, 32) and data.num_classes == 10
    assert abs(float(x.mean())) < 0.01 and abs(float(x.std()) - 1) < 0.01  # 12.3M draws: std error ~3e-4
    counts = torch.bincount(y, minlength=10)
    assert counts.sum() == 4000 and counts.min() > 320 and counts.max() < 480  # 400 ± 6 binomial std errors
    assert torch.equal(noise_bundle(4000, seed=0, device=torch.device("cpu")).train.x, x)


def test_fit_noise_reports_throughput_and_time_to_fit():
    fit = FitNoise(n=50_000, device="cuda", epochs=40, steps=40 * 391, train_seconds=100.0, wall_seconds=120.0,
                   train_acc=1.0, fitted=True, time_cap=150.0)  # fmt: skip
    assert fit.images_per_second == 20_000.0
    assert "| 50,000 Gaussian 3x32x32, random labels | cuda | 20,000 | 120.0 s (40 epochs, 15640 steps) | 1.0000 |" in fit.markdown()
    capped = FitNoise(50_000, "cuda", 30, 30 * 391, 90.0, 95.0, 0.4321, False, 90.0)
    assert "not within the 90 s cap: 43.2% after 30 epochs" in capped.markdown()


@pytest.mark.slow
def test_gpu_check_writes_one_report_from_its_tiny_cpu_run(tmp_path):
    out = tmp_path / "gpu-check.md"
    done = subprocess.run([sys.executable, "-m", "benchmarks.gpu_check", "--quick", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    report = out.read_text(encoding="utf-8")
    heads = [line for line in report.splitlines() if line.startswith("#")]
    assert heads[0] == "# GPU readiness" and [h.split(" (")[0].split(",")[0] for h in heads[1:]] == [
        "## CUDA tests", "## GPU benchmark", "## Fitting noise"]
    cuda_tests = next(line for line in report.splitlines() if line.startswith("`pytest -p benchmarks.gpu_check"))
    if not torch.cuda.is_available():
        assert " skipped" in cuda_tests and "passed" not in cuda_tests and "failed" not in cuda_tests
    assert "| mlp | gradient |" in report  # bench_gpu's table, inside the report
    assert "| 32 Gaussian 3x32x32, random labels | cpu |" in report
    assert report.rstrip().endswith("Every step passed.")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpu-check.md"]  # the benchmark's own table folded in
