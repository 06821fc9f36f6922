"""Curvature products and solves against their peers, at equal accuracy against a float64 reference.

For each model (the registry's ``mlp`` and ``convnet``, eval mode, float32, cross-entropy) on the first
``--n`` real training digits:

1. **Cost of one product.** Median (min–max) seconds of one gradient (``autograd``), one Hessian-vector
   product of :class:`CurvatureOperator` with the retained graph (``primal="retain"``, the default) and
   recomputing (``primal="recompute"``, forward-over-reverse), the same for the Gauss-Newton product,
   and PyHessian's product (double backward through its retained gradient). The graph build is timed
   separately; ``retained`` is the memory it holds.
2. **Top-k eigenvalues at 1e-3** (``k`` = 1 and 5, largest algebraic). Reference: our Lanczos on the
   float64 operator at ``tol=1e-9``. Each method runs a short ladder of its own settings and keeps the
   cheapest that brings every one of the ``k`` eigenvalues within relative 1e-3 of the reference:
   ours (:func:`top_eigenvalues`, ``tol`` 1e-2 / 3e-3 / 1e-3, no extra residual check), curvlinops +
   ``scipy.sparse.linalg.eigsh`` (``tol`` 1e-2 / 1e-3 with ``ncv`` ``max(2k + 1, 8)``, and with ARPACK's
   default 20), PyHessian's power iteration with deflation (its relative-change rule at ``tol`` 1e-3 /
   1e-4 / 1e-5), hessian-eigenthings' Lanczos (``max_iter`` 10 ... 80). Construction is timed with the
   solve for every method (ours builds its graph inside the solve).
3. **Hessian trace to 5% relative standard error.** Each estimator gets the smallest budget of 8, 16,
   32, ... products whose own standard error is at most 5% of its estimate: ours with
   ``method="auto"`` (Hutchinson or Hutch++ by the spectrum check) and plain Hutchinson, PyHessian's
   Hutchinson (``trace(maxIter=m, tol=0)``: exactly ``m`` products).

Times are medians (min–max) over ``--repeats`` rounds after a warm-up, methods taking turns within each
round. Peers missing from the environment are skipped and the table says so. Nothing is asserted.

    python -m benchmarks.bench_curvature --device cpu --n 1000 --threads 1 --models mlp
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Annotated, Any

import torch
import typer
from torch import Tensor, nn

from benchmarks.common import build, digits, header, interleaved, peak_rss, sync
from stability.curvature.lanczos import top_eigenvalues
from stability.curvature.measures import TRACE_METHODS
from stability.curvature.products import CurvatureOperator

TARGET = 1e-3
RSE = 0.05


def _peer(name: str) -> Any:
    try:
        if name == "pyhessian":
            from pyhessian import hessian

            return hessian
        if name == "curvlinops":
            from curvlinops import HessianLinearOperator

            return HessianLinearOperator
        import hessian_eigenthings

        return hessian_eigenthings
    except ImportError:
        return None


def products(module: nn.Module, x: Tensor, y: Tensor, device: torch.device, repeats: int) -> list[str]:
    ops = {p: CurvatureOperator(module, x, y, primal=p) for p in ("retain", "recompute")}
    ggn = {p: CurvatureOperator(module, x, y, curvature="ggn", primal=p) for p in ("retain", "recompute")}
    v = torch.randn(ops["retain"].dim, generator=torch.Generator().manual_seed(0)).to(device)
    params = list(module.parameters())

    def gradient() -> None:
        torch.autograd.grad(nn.functional.cross_entropy(module(x), y), params)

    ops["retain"] @ v
    ggn["retain"] @ v
    sync(device)
    fns: dict[str, Callable[[], Any]] = {
        "gradient": gradient, "HVP, retained": lambda: ops["retain"] @ v, "HVP, recomputed": lambda: ops["recompute"] @ v,
        "GGN, retained": lambda: ggn["retain"] @ v, "GGN, recomputed": lambda: ggn["recompute"] @ v,
    }  # fmt: skip
    build_s = {"HVP, retained": None, "GGN, retained": None}
    Hessian = _peer("pyhessian")
    if Hessian is not None:
        from pyhessian.utils import hessian_vector_product as ph_hvp

        ph = Hessian(module, nn.CrossEntropyLoss(), data=(x, y), cuda=device.type == "cuda")
        vs = [t.reshape(p.shape) for t, p in zip(v.split([p.numel() for p in params]), params)]
        fns["PyHessian HVP"] = lambda: ph_hvp(ph.gradsH, ph.params, vs)
    t = interleaved(fns, repeats, device)
    for key, op in (("HVP, retained", ops["retain"]), ("GGN, retained", ggn["retain"])):
        op.release()
        start = time.perf_counter()
        op @ v
        sync(device)
        build_s[key] = time.perf_counter() - start - t[key].median
    g = t["gradient"].median
    rows = []
    for name, timing in t.items():
        op = {"HVP, retained": ops["retain"], "GGN, retained": ggn["retain"]}.get(name)
        extra = f"build {build_s[name]:.3f} s, retained {op.retained_bytes / 2**20:.1f} MiB" if op is not None else ""
        rows.append(f"| {name} | {timing.s() if g > 1 else timing.ms()} | {timing.median / g:.2f}x | {extra} |")
    return rows


def _eigen_methods(module: nn.Module, x: Tensor, y: Tensor, k: int, device: torch.device) -> dict[str, list]:
    """For each method, a ladder of ``(setting, solve)``; a solve returns the ``k`` eigenvalues, descending."""
    gen = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    ladders: dict[str, list] = {"ours (Lanczos)": [
        (f"tol {tol:g}", lambda tol=tol: top_eigenvalues(CurvatureOperator(module, x, y), k, tol=tol, generator=gen(),
                                                         check_residuals=False).eigenvalues.tolist())
        for tol in (1e-2, 3e-3, 1e-3)]}  # fmt: skip
    HLO = _peer("curvlinops")
    if HLO is not None:
        from scipy.sparse.linalg import eigsh

        def cl(tol: float, ncv: int | None) -> list[float]:
            H = HLO(module, nn.CrossEntropyLoss(), list(module.parameters()), [(x, y)], check_deterministic=False,
                    num_data=x.shape[0]).to_scipy()  # fmt: skip
            return sorted(eigsh(H, k=k, which="LA", tol=tol, ncv=ncv)[0].tolist(), reverse=True)

        ncv = max(2 * k + 1, 8)
        ladders["curvlinops + eigsh"] = [(f"tol {tol:g}, ncv {n or 20}", lambda tol=tol, n=n: cl(tol, n))
                                         for n in (ncv, None) for tol in (1e-2, 1e-3)]  # fmt: skip
    Hessian = _peer("pyhessian")
    if Hessian is not None:
        def ph(tol: float) -> list[float]:
            torch.manual_seed(1)  # PyHessian draws its start vectors from the global RNG
            h = Hessian(module, nn.CrossEntropyLoss(), data=(x, y), cuda=device.type == "cuda")
            return sorted(h.eigenvalues(maxIter=1000, tol=tol, top_n=k)[0], reverse=True)

        ladders["PyHessian (power)"] = [(f"tol {tol:g}", lambda tol=tol: ph(tol)) for tol in (1e-3, 1e-4, 1e-5)]
    he = _peer("hessian_eigenthings")
    if he is not None:
        def eig(steps: int) -> list[float]:
            op = he.HessianOperator(module, [(x, y)], he.supervised_loss(nn.functional.cross_entropy))
            return sorted(he.lanczos(op, k=k, max_iter=steps, which="LA", seed=1).eigenvalues.tolist(),
                          reverse=True)[:k]  # fmt: skip

        ladders["hessian-eigenthings (Lanczos)"] = [(f"{s} steps", lambda s=s: eig(s)) for s in (10, 15, 20, 30, 40, 80)]
    return ladders


def eigen(module: nn.Module, x: Tensor, y: Tensor, k: int, device: torch.device, repeats: int, label: str) -> list[str]:
    ref_op = CurvatureOperator(module, x, y, dtype=torch.float64)
    ref = top_eigenvalues(ref_op, k, tol=1e-9, max_iter=500, generator=torch.Generator().manual_seed(2))
    want = torch.tensor(ref.eigenvalues.tolist(), dtype=torch.float64)
    chosen: dict[str, tuple[str, Callable[[], Any], float]] = {}
    for name, ladder in _eigen_methods(module, x, y, k, device).items():
        for setting, solve in ladder:
            got = torch.tensor(solve(), dtype=torch.float64)
            err = float(((got - want).abs() / want.abs()).max())
            if err <= TARGET:
                chosen[name] = (setting, solve, err)
                break
        else:
            chosen[name] = (f"{setting} (misses 1e-3: {err:.1e})", solve, err)
    t = interleaved({name: c[1] for name, c in chosen.items()}, repeats, device)
    ours = t["ours (Lanczos)"].median
    mem = {name: peak_rss(c[1]) if device.type == "cpu" else None for name, c in chosen.items()}
    return [f"| {label} | {k} | {name} | {setting} | {err:.1e} | {t[name].s()} | {t[name].median / ours:.2f}x "
            f"| {'—' if mem[name] is None else f'{mem[name]:.0f}'} |"
            for name, (setting, _, err) in chosen.items()]


def trace(module: nn.Module, x: Tensor, y: Tensor, device: torch.device, repeats: int, label: str) -> list[str]:
    budgets = [8 * 2**i for i in range(8)]
    gen = lambda: torch.Generator().manual_seed(3)  # noqa: E731

    def ours(method: str, m: int) -> tuple[float, float, str]:
        r = TRACE_METHODS[method](CurvatureOperator(module, x, y), m, generator=gen())
        return r.estimate, r.stderr, r.method

    methods: dict[str, Callable[[int], tuple[float, float, str]]] = {
        "ours, auto": lambda m: ours("auto", m), "ours, Hutchinson": lambda m: ours("hutchinson", m)}
    Hessian = _peer("pyhessian")
    if Hessian is not None:
        def ph(m: int) -> tuple[float, float, str]:
            torch.manual_seed(3)
            s = torch.tensor(Hessian(module, nn.CrossEntropyLoss(), data=(x, y), cuda=device.type == "cuda")
                             .trace(maxIter=m, tol=0.0), dtype=torch.float64)  # fmt: skip
            return float(s.mean()), float(s.std() / math.sqrt(len(s))), "hutchinson"

        methods["PyHessian (Hutchinson)"] = ph
    chosen = {}
    for name, fn in methods.items():
        for m in budgets:
            est, se, kind = fn(m)
            if se <= RSE * abs(est):
                break
        chosen[name] = (m, est, se, kind)
    t = interleaved({name: (lambda fn=methods[name], m=c[0]: fn(m)) for name, c in chosen.items()}, repeats, device)
    ours_s = t["ours, auto"].median
    return [f"| {label} | {name} | {kind} | {m} | {est:.4g} | {se / abs(est):.3f} | {t[name].s()} "
            f"| {t[name].median / ours_s:.2f}x |" for name, (m, est, se, kind) in chosen.items()]


def main(
    device: Annotated[str, typer.Option(help="torch device, e.g. cpu or cuda")] = "cpu",
    n: Annotated[int, typer.Option(help="training digits in the evaluation set")] = 1000,
    repeats: Annotated[int, typer.Option(help="timed rounds (median and min–max reported)")] = 3,
    threads: Annotated[int, typer.Option(help="torch intra-op threads (0: torch's default)")] = 0,
    models: Annotated[str, typer.Option(help="comma-separated architectures for the product costs")] = "mlp,convnet",
    solves: Annotated[str, typer.Option(help="comma-separated architectures for eigen and trace solves")] = "mlp",
    seed: Annotated[int, typer.Option(help="seed of the weights and the digit subset")] = 0,
) -> str:
    """Measure curvature products and solves against their peers; print markdown tables."""
    if threads > 0:
        torch.set_num_threads(threads)
    dev = torch.device(device)
    prod, eig, tr, sources = [], [], [], set()
    for arch in [a.strip() for a in models.split(",") if a.strip()]:
        module = build(arch, (1, 8, 8), seed).to(dev)
        x, y, src = digits(n, 8, seed)
        sources.add(src)
        x, y = x.to(dev), y.to(dev)
        prod += [f"| **{arch}** ({sum(p.numel() for p in module.parameters()):,} params) | | | |",
                 *products(module, x, y, dev, repeats)]
        if arch in solves.split(","):
            eig += eigen(module, x, y, 1, dev, repeats, arch) + eigen(module, x, y, 5, dev, repeats, arch)
            tr += trace(module, x, y, dev, repeats, arch)
    out = "\n".join([
        header(dev, f"; float32, cross-entropy, eval mode, n = {n} ({', '.join(sorted(sources))})"), "",
        "One product over the evaluation set: median (min–max), ms below 1 s of gradient, else s", "",
        "| product | time | / gradient | graph |", "|---|---:|---:|---|", *prod, "",
        f"Top-k eigenvalues within relative {TARGET:g} of the float64 reference (cheapest setting that meets it; "
        "construction included; memory: peak RSS rise, MiB)", "",
        "| model | k | method | setting | max error | seconds | / ours | memory |", "|---|---:|---|---|---:|---:|---:|---:|",
        *eig, "",
        f"Hessian trace to {RSE:.0%} relative standard error (smallest budget of 8·2^i products that meets it)", "",
        "| model | method | ran | products | estimate | relative stderr | seconds | / ours (auto) |",
        "|---|---|---|---:|---:|---:|---:|---:|", *tr,
    ])  # fmt: skip
    print(out)
    return out


if __name__ == "__main__":
    typer.run(main)
