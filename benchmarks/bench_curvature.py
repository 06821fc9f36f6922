"""Sharpness (top Hessian eigenvalue): our Lanczos against power iteration and curvlinops + scipy.

For each model (10 classes, digits-shaped inputs ``(1, 8, 8)``, cross-entropy, eval mode, float32), on
the first ``--n`` training digits (random inputs and labels if the digits data cannot be loaded):

1. **Cost of one HVP.** Median time of one Hessian-vector product of :class:`CurvatureOperator`
   (``jvp(grad(L))``, forward-over-reverse) against one gradient of the same loss (plain autograd
   ``loss.backward`` and ``torch.func.grad``), and of one Gauss-Newton product. Target: HVP ≤ 3x gradient.
2. **Products to reach 1e-3.** A reference sharpness from Lanczos at ``tol=1e-6``. Then, on the same
   operator and start vector, the number of products after which the estimate stays within relative
   1e-3 of the reference: Lanczos (thick restart, full reorthogonalization) against power iteration.
   Also each method's own stopping rule: ours at ``tol=1e-3`` (residual-based), power iteration at
   PyHessian's rule (relative change of the estimate below 1e-3). Target: ours ≤ 1/3 of power's.
3. **Wall time against curvlinops.** ``HessianLinearOperator`` + ``scipy.sparse.linalg.eigsh(k=1,
   which="LA", tol=1e-3)`` against ``top_eigenvalues(op, 1, tol=1e-3)``, construction excluded (curvlinops'
   determinism check and data pass are not timed). Target: ours faster. Skipped if curvlinops is absent.

Nothing is asserted: the script prints a markdown table of what it measured.

    python benchmarks/bench_curvature.py --device cpu --n 1000 --threads 1
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import torch
import typer
from torch import Tensor, nn
from torch.func import grad

from stability.curvature.lanczos import power_iteration, top_eigenvalues
from stability.curvature.products import CurvatureOperator
from stability.losses import mean_loss
from stability.models.registry import build_model  # noqa: E402
from stability.models.spec import ModelSpec  # noqa: E402

INPUT_SHAPE = (1, 8, 8)
NUM_CLASSES = 10
TARGET = 1e-3


def build(arch: str, seed: int) -> tuple[nn.Module, str]:
    """The registry's model, initialized from ``seed`` without touching the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_model(ModelSpec(arch), INPUT_SHAPE, NUM_CLASSES), "stability.models"


def digits(n: int, seed: int) -> tuple[Tensor, Tensor, str]:
    """The first ``n`` standardized training digits, or seeded random stand-ins."""
    try:
        from stability.data.bundle import load_data
        from stability.data.spec import DataSpec

        split = load_data(DataSpec(dataset="digits", n_train=n, seed=seed)).train
        return split.x, split.y, "digits"
    except Exception:  # noqa: BLE001 - any failure to load falls back to synthetic data, stated in the table
        gen = torch.Generator().manual_seed(seed)
        x = torch.randn(n, *INPUT_SHAPE, generator=gen)
        return x, torch.randint(0, NUM_CLASSES, (n,), generator=gen), "random"


def median_time(fn: Callable[[], Any], repeats: int, device: torch.device) -> float:
    """Median wall time over ``repeats`` calls after one warm-up call."""
    times = []
    for i in range(repeats + 1):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def products_to_target(history: tuple[float, ...], ref: float) -> int | None:
    """Products after which every later estimate is within relative ``TARGET`` of ``ref``."""
    ok = [abs(h - ref) <= TARGET * abs(ref) for h in history]
    if not ok or not ok[-1]:
        return None
    last_bad = max((i for i, good in enumerate(ok) if not good), default=-1)
    return last_bad + 2  # history[i] is the estimate after i + 1 products


def pyhessian_stop(history: tuple[float, ...]) -> int | None:
    """Products at which PyHessian's rule (relative change below ``TARGET``) would stop power iteration."""
    for i in range(1, len(history)):
        if abs(history[i] - history[i - 1]) < TARGET * abs(history[i]):
            return i + 1
    return None


@dataclass
class Row:
    model: str
    source: str
    data: str
    num_params: int
    n: int
    hvp_s: float
    ggn_s: float
    grad_s: float
    func_grad_s: float
    sharpness: float
    lanczos_to_target: int | None
    power_to_target: int | None
    lanczos_own_stop: int
    lanczos_own_err: float
    power_own_stop: int | None
    power_own_err: float | None
    ours_s: float
    ours_err: float
    curvlinops_s: float | None
    curvlinops_products: int | None
    curvlinops_err: float | None


def bench_model(arch: str, device: torch.device, n: int, chunk_size: int | None, repeats: int,
                power_max_iter: int, seed: int) -> Row:
    module, source = build(arch, seed)
    module = module.to(device).eval()
    x, y, data = digits(n, seed)
    x, y = x.to(device), y.to(device)
    op = CurvatureOperator(module, x, y, chunk_size=chunk_size)
    ggn = CurvatureOperator(module, x, y, curvature="ggn", chunk_size=chunk_size)
    gen = torch.Generator().manual_seed(seed)
    v = torch.randn(op.dim, generator=gen).to(device)
    params = list(module.parameters())

    def autograd_grad() -> None:
        for xb, yb in op.batches():
            torch.autograd.grad(nn.functional.cross_entropy(module(xb), yb), params)

    def func_grad() -> None:
        for xb, yb in op.batches():
            grad(lambda p: mean_loss("cross-entropy", op.model(p, xb), yb))(op.params)  # noqa: B023

    hvp_s = median_time(lambda: op(v), repeats, device)
    ggn_s = median_time(lambda: ggn(v), repeats, device)
    grad_s = median_time(autograd_grad, repeats, device)
    func_grad_s = median_time(func_grad, repeats, device)

    ref = top_eigenvalues(op, 1, tol=1e-6, max_iter=300, v0=v)
    if not ref.converged:
        raise RuntimeError(f"{arch}: the reference Lanczos solve did not converge")
    sharp = float(ref.eigenvalues[0])
    power = power_iteration(op, tol=1e-7, max_iter=power_max_iter, v0=v)
    own = top_eigenvalues(op, 1, tol=TARGET, v0=v)
    p_stop = pyhessian_stop(power.history)

    t0 = time.perf_counter()
    ours = top_eigenvalues(op, 1, tol=TARGET, generator=torch.Generator().manual_seed(seed + 1))
    ours_s = time.perf_counter() - t0
    cl_s = cl_products = cl_err = None
    try:
        from curvlinops import HessianLinearOperator
        from scipy.sparse.linalg import LinearOperator, eigsh
    except ImportError:
        pass
    else:
        batches = list(zip(x.split(chunk_size or n), y.split(chunk_size or n)))
        H = HessianLinearOperator(module, nn.CrossEntropyLoss(), params, batches, check_deterministic=False,
                                  num_data=n).to_scipy()
        count = [0]

        def matvec(u: Any) -> Any:
            count[0] += 1
            return H @ u

        counted = LinearOperator(H.shape, matvec=matvec, dtype=H.dtype)
        t0 = time.perf_counter()
        top = float(eigsh(counted, k=1, which="LA", tol=TARGET)[0][0])
        cl_s, cl_products, cl_err = time.perf_counter() - t0, count[0], abs(top - sharp) / abs(sharp)
    return Row(
        arch, source, data, op.dim, n, hvp_s, ggn_s, grad_s, func_grad_s, sharp,
        products_to_target(ref.history, sharp), products_to_target(power.history, sharp),
        own.num_hvps, abs(float(own.eigenvalues[0]) - sharp) / abs(sharp),
        p_stop, None if p_stop is None else abs(power.history[p_stop - 1] - sharp) / abs(sharp),
        ours_s, abs(float(ours.eigenvalues[0]) - sharp) / abs(sharp), cl_s, cl_products, cl_err,
    )


def _fmt(v: float | int | None, spec: str = "") -> str:
    return "—" if v is None else format(v, spec)


def markdown(rows: list[Row], device: torch.device, power_max_iter: int) -> str:
    head = (f"device: {device}, torch {torch.__version__}, {torch.get_num_threads()} threads, float32, "
            f"input (1, 8, 8), 10 classes, cross-entropy, eval mode; target relative accuracy {TARGET:g}")
    lines = [head, "", "Cost of one product (median seconds over the whole evaluation set):", "",
             "| model | params | data (n) | HVP | GGN-vector | gradient (autograd) | gradient (torch.func) "
             "| HVP / gradient |", "|---|---:|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r.model} ({r.source}) | {r.num_params:,} | {r.data} ({r.n}) | {r.hvp_s:.4f} "
                     f"| {r.ggn_s:.4f} | {r.grad_s:.4f} | {r.func_grad_s:.4f} | {r.hvp_s / r.grad_s:.2f}x |")
    lines += ["", f"Products to reach relative error {TARGET:g} in the sharpness (power iteration capped at "
              f"{power_max_iter}):", "",
              "| model | sharpness | Lanczos (stays within) | power (stays within) | power / Lanczos "
              "| Lanczos own stop: products, error | power PyHessian stop: products, error |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        ratio = (f"{r.power_to_target / r.lanczos_to_target:.1f}x"
                 if r.power_to_target and r.lanczos_to_target else "—")
        lines.append(f"| {r.model} | {r.sharpness:.5g} | {_fmt(r.lanczos_to_target)} "
                     f"| {_fmt(r.power_to_target) if r.power_to_target else f'> {power_max_iter}'} | {ratio} "
                     f"| {r.lanczos_own_stop}, {r.lanczos_own_err:.1e} "
                     f"| {_fmt(r.power_own_stop)}, {_fmt(r.power_own_err, '.1e')} |")
    lines += ["", "Wall time of one sharpness solve at tol 1e-3 (construction excluded):", "",
              "| model | ours: seconds, error | curvlinops + eigsh: seconds, products, error "
              "| curvlinops / ours |",
              "|---|---:|---:|---:|"]
    for r in rows:
        cl = (f"{r.curvlinops_s:.2f}, {r.curvlinops_products}, {r.curvlinops_err:.1e}"
              if r.curvlinops_s is not None else "not installed")
        speed = f"{r.curvlinops_s / r.ours_s:.1f}x" if r.curvlinops_s is not None else "—"
        lines.append(f"| {r.model} | {r.ours_s:.2f}, {r.ours_err:.1e} | {cl} | {speed} |")
    return "\n".join(lines)


def main(
    device: Annotated[str, typer.Option(help="torch device to run on, e.g. cpu or cuda")] = "cpu",
    n: Annotated[int, typer.Option(help="training digits in the evaluation set")] = 1000,
    chunk_size: Annotated[int, typer.Option(help="samples per chunk (0: all at once)")] = 0,
    repeats: Annotated[int, typer.Option(help="timed repetitions per product (median reported)")] = 5,
    power_max_iter: Annotated[int, typer.Option(help="cap on power-iteration steps")] = 300,
    threads: Annotated[int, typer.Option(help="torch intra-op threads (0: leave torch's default)")] = 0,
    models: Annotated[str, typer.Option(help="comma-separated architectures")] = "mlp,convnet",
    seed: Annotated[int, typer.Option(help="seed of the weights, data subset and start vectors")] = 0,
) -> list[Row]:
    """Measure HVP cost and sharpness solvers; print a markdown table of the results."""
    if threads > 0:
        torch.set_num_threads(threads)
    dev = torch.device(device)
    rows = [bench_model(a.strip(), dev, n, chunk_size or None, repeats, power_max_iter, seed)
            for a in models.split(",")]
    print(markdown(rows, dev, power_max_iter))
    return rows


if __name__ == "__main__":
    typer.run(main)
