"""The benchmark scripts run, and their baselines compute what the timed methods compute."""

from __future__ import annotations

import pytest
import torch

from benchmarks.bench_gpu import main as gpu_main
from benchmarks.bench_jacobians import c_vjps, gemm, grad_loop, grads_batched, jacrev_loop
from benchmarks.common import build, digits
from stability.sensitivity.jacobian import input_jacobian


def test_every_jacobian_baseline_equals_ours_on_real_digits() -> None:
    module = build("mlp", (1, 8, 8), 0, width=16).double()
    x = digits(6)[0].double()
    ours = input_jacobian(module, x)
    for baseline in (c_vjps, gemm, grad_loop, grads_batched, jacrev_loop):
        torch.testing.assert_close(baseline(module, x), ours, rtol=1e-12, atol=1e-12)


@pytest.mark.slow
def test_the_gpu_benchmark_runs_on_cpu_and_writes_one_table(tmp_path) -> None:
    out = tmp_path / "gpu.md"
    text = gpu_main(device="cpu", quick=True, out=out)
    lines = out.read_text(encoding="utf-8").splitlines()
    assert text.splitlines() == lines
    rows = [line for line in lines if line.startswith("| mlp |")]
    assert len(rows) == 13 and "TF32: matmul False" in lines[0]
    errors = {r.split(" | ")[1]: r.rstrip(" |").split(" | ")[-1] for r in rows}
    assert float(errors["HVP, retained (first call builds)"]) < 1e-5  # float32 against the float64 reference
    assert float(errors["‖J‖₂ exact"]) < 1e-5
