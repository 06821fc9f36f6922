"""One GPU benchmark, whole in a few minutes on one H100/H200, written as one markdown table.

For the registry's ``mlp`` and ``convnet`` on real digits upsampled to 28x28 (float32, eval mode,
cross-entropy), each row times one operation with CUDA events after a warm-up, reports the first
(cold) call separately from the median (min–max) of the warm ones, the peak memory
(``torch.cuda.max_memory_allocated`` above what was allocated before the call), and the relative error
against a float64 CPU reference:

- per-sample Jacobians: :func:`input_jacobian` with its device default (all rows at once off CPU) and
  with ``vjp_chunk_size=1``; the ``C`` batched VJPs; the closed-form GEMM (MLP); ``torch.compile`` of the
  GEMM and of the ``C``-VJP function (``--compile``);
- spectral norms: exact (Jacobian + Gram eigendecomposition) and power iteration;
- curvature: gradient; Hessian-vector product retained and recomputed; the retained ``matmat`` of 8
  columns as one ``is_grads_batched`` pass and column by column; top-1 eigenvalue by Lanczos; the
  Hutchinson trace with 32 probes.

The TF32 flags in force are recorded in the header (``--tf32`` turns them on, to measure their effect
on accuracy). On a machine without CUDA it runs the same rows on CPU at tiny sizes (``--quick``), with
wall-clock timing, so that the script itself is tested.

    python -m benchmarks.bench_gpu --out gpu.md             # on the GPU machine, under 8 minutes
    python -m benchmarks.bench_gpu --device cpu --quick     # the CPU smoke run
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import torch
import typer
from torch import Tensor

from benchmarks.bench_jacobians import c_vjps, gemm
from benchmarks.common import build, digits, header
from stability.curvature.lanczos import top_eigenvalues
from stability.curvature.products import CurvatureOperator
from stability.curvature.trace import hutchinson_trace
from stability.functional import functionalize
from stability.sensitivity.jacobian import input_jacobian, jacobian_spectral


@dataclass(frozen=True)
class Row:
    model: str
    what: str
    cold_ms: float
    median_ms: float
    low_ms: float
    high_ms: float
    peak_mib: float | None
    error: float | None


def measure(fn: Callable[[], Any], device: torch.device, repeats: int) -> tuple[Any, float, list[float], float | None]:
    """``(result, cold ms, warm ms list, peak MiB)``: CUDA events on CUDA, ``perf_counter`` elsewhere."""
    cuda = device.type == "cuda"

    def once() -> tuple[Any, float]:
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            out = fn()
            end.record()
            torch.cuda.synchronize(device)
            return out, start.elapsed_time(end)
        t0 = time.perf_counter()
        out = fn()
        return out, (time.perf_counter() - t0) * 1e3

    peak = None
    if cuda:
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
    out, cold = once()
    if cuda:
        peak = (torch.cuda.max_memory_allocated(device) - base) / 2**20
    once()  # a second warm-up: allocator and autotuning settle after the first call
    warm = [once()[1] for _ in range(repeats)]
    return out, cold, warm, peak


def rel_error(got: Any, ref: Tensor | float | None) -> float | None:
    if ref is None:
        return None
    if isinstance(ref, float):
        return abs(float(got) - ref) / max(abs(ref), 1e-30)
    got = got.detach().to("cpu", torch.float64)
    return float((got - ref).abs().max() / ref.abs().max().clamp_min(1e-30))


def rows_for(arch: str, device: torch.device, n: int, batch: int, side: int, repeats: int, compile_: bool,
             power_iters: int = 100) -> list[Row]:
    module = build(arch, (1, side, side), 0).to(device)
    ref_module = build(arch, (1, side, side), 0).double()
    x, y, _ = digits(max(n, batch), side, 0)
    xb, xn, yn = x[:batch].to(device), x[:n].to(device), y[:n].to(device)
    fm = functionalize(module)
    out: list[Row] = []

    def add(what: str, fn: Callable[[], Any], ref: Any = None, post: Callable[[Any], Any] = lambda r: r) -> None:
        result, cold, warm, peak = measure(fn, device, repeats)
        out.append(Row(arch, what, cold, statistics.median(warm), min(warm), max(warm), peak,
                       rel_error(post(result), ref)))  # fmt: skip

    J_ref = input_jacobian(functionalize(ref_module), x[:batch].double())
    for p in module.parameters():
        p.requires_grad_(False)
    add("Jacobian, ours (device default)", lambda: input_jacobian(fm, xb), J_ref)
    add("Jacobian, ours, vjp_chunk_size=1", lambda: input_jacobian(fm, xb, vjp_chunk_size=1), J_ref)
    add("Jacobian, C batched VJPs", lambda: c_vjps(module, xb), J_ref)
    if arch == "mlp":
        add("Jacobian, closed-form GEMM", lambda: gemm(module, xb), J_ref)
    if compile_:
        if arch == "mlp":
            compiled_gemm = torch.compile(gemm)
            add("Jacobian, GEMM, torch.compile", lambda: compiled_gemm(module, xb), J_ref)
        compiled_vjps = torch.compile(c_vjps)
        add("Jacobian, C VJPs, torch.compile", lambda: compiled_vjps(module, xb), J_ref)
    s_ref = torch.linalg.matrix_norm(J_ref.flatten(2), ord=2)
    add("‖J‖₂ exact", lambda: jacobian_spectral(fm, xb), s_ref, lambda r: r.values)
    add(f"‖J‖₂ power ({power_iters} steps max)", lambda: jacobian_spectral(fm, xb, method="power", iters=power_iters),
        s_ref, lambda r: r.values)  # fmt: skip
    for p in module.parameters():
        p.requires_grad_(True)

    params = list(module.parameters())
    add("gradient", lambda: torch.autograd.grad(torch.nn.functional.cross_entropy(module(xn), yn), params))
    ref_op = CurvatureOperator(ref_module, x[:n], y[:n])
    v = torch.randn(ref_op.dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    Hv_ref = ref_op @ v
    retained, recomputed = (CurvatureOperator(module, xn, yn, primal=p) for p in ("retain", "recompute"))
    v32 = v.to(device, torch.float32)
    add("HVP, retained (first call builds)", lambda: retained @ v32, Hv_ref)
    add("HVP, recomputed", lambda: recomputed @ v32, Hv_ref)
    V = torch.randn(ref_op.dim, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    HV_ref = ref_op @ V
    V32 = V.to(device, torch.float32)

    def matmat(batched: bool) -> Tensor:
        retained.batched_matmat = batched
        return retained @ V32

    add("H V (8 columns), is_grads_batched", lambda: matmat(True), HV_ref)
    add("H V (8 columns), one by one", lambda: matmat(False), HV_ref)
    lam_ref = float(top_eigenvalues(ref_op, 1, tol=1e-8, generator=torch.Generator().manual_seed(2)).eigenvalues[0])
    add("λ_max, Lanczos tol 1e-3", lambda: top_eigenvalues(CurvatureOperator(module, xn, yn), 1, tol=1e-3,
                                                            generator=torch.Generator().manual_seed(2)),
        lam_ref, lambda r: float(r.eigenvalues[0]))  # fmt: skip
    add("trace, Hutchinson 32 probes", lambda: hutchinson_trace(CurvatureOperator(module, xn, yn), 32),
        None, lambda r: r.estimate)  # fmt: skip
    return out


def markdown(rows: list[Row], device: torch.device, title: str) -> str:
    def f(v: float | None, spec: str) -> str:
        return "—" if v is None else format(v, spec)

    lines = [title, "", "| model | operation | cold ms | warm ms, median (min–max) | peak MiB | error vs float64 CPU |",
             "|---|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r.model} | {r.what} | {r.cold_ms:.1f} | {r.median_ms:.2f} ({r.low_ms:.2f}–{r.high_ms:.2f}) "
                     f"| {f(r.peak_mib, '.1f')} | {f(r.error, '.1e')} |")
    return "\n".join(lines)


def main(
    device: Annotated[str, typer.Option(help="cuda (default when available) or cpu")] = "",
    quick: Annotated[bool, typer.Option(help="tiny sizes, 8x8 inputs, one model (the CPU smoke run)")] = False,
    n: Annotated[int, typer.Option(help="samples in the curvature evaluation set")] = 4096,
    batch: Annotated[int, typer.Option(help="samples per Jacobian batch")] = 4096,
    repeats: Annotated[int, typer.Option(help="warm calls timed per row")] = 10,
    compile: Annotated[bool, typer.Option(help="add torch.compile variants")] = True,  # noqa: A002
    tf32: Annotated[bool, typer.Option(help="allow TF32 matmuls and convolutions")] = False,
    models: Annotated[str, typer.Option(help="comma-separated architectures")] = "mlp,convnet",
    out: Annotated[Path | None, typer.Option(help="write the markdown table here too")] = None,
) -> str:
    """Time the library's hot paths on one device; print (and optionally write) one markdown table."""
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    side, power_iters = 28, 100
    if quick:
        n, batch, repeats, compile, models, side, power_iters = 32, 8, 1, False, "mlp", 8, 5
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    flags = (f"; TF32: matmul {torch.backends.cuda.matmul.allow_tf32}, cudnn {torch.backends.cudnn.allow_tf32}; "
             f"n = {n}, Jacobian batch = {batch}, {side}x{side} digits, float32; timing: "
             f"{'CUDA events' if dev.type == 'cuda' else 'perf_counter'}")  # fmt: skip
    rows = [r for arch in models.split(",")
            for r in rows_for(arch.strip(), dev, n, batch, side, repeats, compile, power_iters)]
    text = markdown(rows, dev, header(dev, flags))
    print(text)
    if out is not None:
        out.write_text(text + "\n", encoding="utf-8")
    return text


if __name__ == "__main__":
    typer.run(main)
