"""Per-sample input Jacobians and their spectral norms against the strongest baselines we know.

For ``B`` real digits (``(1, 8, 8)``, or upsampled to ``(1, 28, 28)`` with ``--side 28``) through the
registry's ``mlp`` (one hidden ReLU layer of ``--widths``) and ``convnet`` in eval mode, float32, the
time to get every ``J(x_i) = ∂f(x_i)/∂x_i`` (``C = 10`` rows):

- ``ours``: :func:`stability.sensitivity.input_jacobian` with its defaults (argument checks included);
  ``ours, all rows``: ``vjp_chunk_size=None`` (the ``C`` VJPs under a second ``vmap``).
- ``jacrev loop``: per sample, ``torch.func.jacrev`` of the one-sample function (the strongest
  per-sample loop; timed on ``--loop-samples`` samples and scaled to ``B``); ``grad loop``: per sample,
  one forward pass and ``C`` ``autograd.grad`` calls (scaled likewise).
- ``C VJPs``: one batched forward and ``C`` batched ``autograd.grad`` calls of the batch-summed output
  ``c`` (valid because eval-mode samples are independent); ``is_grads_batched``: the same ``C`` VJPs as
  one call with ``autograd.grad(..., is_grads_batched=True)``.
- ``GEMM`` (MLP only): the closed form ``J(x_i) = W₂ diag(1[z_i > 0]) W₁``, ``z_i = W₁ x_i + b₁``, one
  batched matrix product: a true lower bound on what any autodiff method can cost.

Then the spectral norm ``‖J(x_i)‖₂``: :func:`stability.sensitivity.jacobian_spectral` with its default
(exact: the ``C``-row Jacobian and a batched SVD) against its power iteration at the former defaults
(``iters=100``, ``tol=1e-4``), both checked against the float64 SVD of the float64 Jacobian.

All Jacobians are checked to agree (relative 1e-4; at max-pool ties the per-sample and batched
Jacobians may pick different maxima, and the table reports the largest difference instead of
failing). Times: median (min–max) over ``--repeats`` rounds after a warm-up round, methods taking
turns within each round. Peak memory: the rise of the process's peak resident memory during one call.
Nothing is asserted: the script prints markdown tables.

    python -m benchmarks.bench_jacobians --device cpu --batches 512 --repeats 7 --threads 1
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import torch
import typer
from torch import Tensor, nn
from torch.func import jacrev

from benchmarks.common import NUM_CLASSES, build, digits, header, interleaved, peak_rss
from stability.functional import functionalize
from stability.sensitivity.jacobian import input_jacobian, jacobian_spectral


def grad_loop(module: nn.Module, x: Tensor) -> Tensor:
    """One sample at a time, one ``autograd.grad`` per output."""
    rows = []
    for i in range(x.shape[0]):
        xi = x[i : i + 1].detach().requires_grad_(True)
        out = module(xi)[0]
        rows.append(torch.stack([torch.autograd.grad(out[c], xi, retain_graph=c < out.shape[0] - 1)[0][0]
                                 for c in range(out.shape[0])]))  # fmt: skip
    return torch.stack(rows)


def jacrev_loop(module: nn.Module, x: Tensor) -> Tensor:
    """One sample at a time, ``torch.func.jacrev`` of the one-sample function."""
    single = jacrev(lambda xi: module(xi[None])[0])
    return torch.stack([single(x[i]) for i in range(x.shape[0])])


def c_vjps(module: nn.Module, x: Tensor) -> Tensor:
    """``C`` batched VJPs; row ``c`` of every sample's Jacobian is ``∇_x Σ_i f_c(x_i)``."""
    xg = x.detach().requires_grad_(True)
    out = module(xg)
    C = out.shape[1]
    return torch.stack([torch.autograd.grad(out[:, c].sum(), xg, retain_graph=c < C - 1)[0] for c in range(C)], 1)


def grads_batched(module: nn.Module, x: Tensor) -> Tensor:
    """The ``C`` batched VJPs as one ``autograd.grad`` call with ``is_grads_batched=True``."""
    xg = x.detach().requires_grad_(True)
    out = module(xg)
    C = out.shape[1]
    eye = torch.eye(C, dtype=out.dtype, device=out.device)[:, None, :].expand(C, *out.shape)
    return torch.autograd.grad(out, xg, eye, is_grads_batched=True)[0].transpose(0, 1)


def gemm(module: nn.Module, x: Tensor) -> Tensor:
    """``W₂ diag(1[W₁ x + b₁ > 0]) W₁`` per sample for a one-hidden-layer ReLU MLP."""
    W1, b1, W2 = module.fc1.weight, module.fc1.bias, module.out.weight
    flat = x.flatten(1)
    mask = (flat @ W1.T + b1 > 0).to(x.dtype)
    return torch.einsum("ch,bh,hd->bcd", W2, mask, W1).reshape(x.shape[0], W2.shape[0], *x.shape[1:])


def bench(arch: str, width: int, batch: int, side: int, device: torch.device, repeats: int, loop_samples: int,
          seed: int) -> tuple[str, str, str]:
    module = build(arch, (1, side, side), seed, width).to(device)
    for p in module.parameters():
        p.requires_grad_(False)  # every method differentiates with respect to the input only
    fm = functionalize(module)
    x, _, source = digits(batch, side, seed)
    x = x.to(device)
    n_loop = min(loop_samples, batch)
    methods: dict[str, Callable[[], Tensor]] = {
        "ours": lambda: input_jacobian(fm, x),
        "ours, all rows": lambda: input_jacobian(fm, x, vjp_chunk_size=None),
        "C VJPs": lambda: c_vjps(module, x),
        "is_grads_batched": lambda: grads_batched(module, x),
        "jacrev loop": lambda: jacrev_loop(module, x[:n_loop]),
        "grad loop": lambda: grad_loop(module, x[:n_loop]),
    }
    if arch == "mlp":
        methods["GEMM"] = lambda: gemm(module, x)
    ref = input_jacobian(functionalize(module, dtype=torch.float64), x.double()).flatten(2)
    scale = float(ref.abs().max())
    diffs = {}
    for name, fn in methods.items():
        J = fn().flatten(2).double()
        diffs[name] = float((J - ref[: J.shape[0]]).abs().max()) / scale
    t = interleaved(methods, repeats, device)
    mem = {name: peak_rss(fn) if device.type == "cpu" else None for name, fn in methods.items()}
    scale_of = {name: (batch / n_loop if "loop" in name else 1.0) for name in methods}
    ours = t["ours"].median
    label = f"{arch}" + (f" (width {width})" if arch == "mlp" else "")
    jac_rows = []
    for name, timing in t.items():
        s = scale_of[name]
        m = mem[name]
        jac_rows.append(
            f"| {label} | {batch} | {side}x{side} | {name} | {timing.median * s * 1e3:.1f} "
            f"({timing.low * s * 1e3:.1f}–{timing.high * s * 1e3:.1f}) | {timing.median * s / ours:.2f}x "
            f"| {diffs[name]:.1e} | {'—' if m is None else f'{m:.1f}'} |"
        )

    # Spectral norms: exact (the default) against power iteration at the former defaults.
    exact_ref = torch.linalg.matrix_norm(ref, ord=2)
    runs = {"exact": lambda: jacobian_spectral(fm, x), "power": lambda: jacobian_spectral(fm, x, method="power")}
    ts = interleaved(runs, repeats, device)
    results = {k: fn() for k, fn in runs.items()}
    spec_rows = []
    for name, res in results.items():
        err = ((res.values.double().cpu() - exact_ref.cpu()).abs() / exact_ref.cpu().clamp_min(1e-30))
        spec_rows.append(
            f"| {label} | {batch} | {side}x{side} | {name} | {ts[name].ms()} | {ts['power'].median / ts[name].median:.1f}x "
            f"| {res.iterations} | {int((~res.converged).sum())} | {float(err.max()):.1e} | {float(err.median()):.1e} |"
        )
    return "\n".join(jac_rows), "\n".join(spec_rows), source


def main(
    device: Annotated[str, typer.Option(help="torch device, e.g. cpu or cuda")] = "cpu",
    batches: Annotated[str, typer.Option(help="comma-separated batch sizes (a sweep over n)")] = "512",
    widths: Annotated[str, typer.Option(help="comma-separated hidden widths of the MLP (a sweep)")] = "512",
    side: Annotated[int, typer.Option(help="input side: 8 (digits) or 28 (digits upsampled)")] = 8,
    repeats: Annotated[int, typer.Option(help="timed rounds per method (median and min–max reported)")] = 5,
    loop_samples: Annotated[int, typer.Option(help="samples the per-sample loops are timed on, then scaled")] = 32,
    threads: Annotated[int, typer.Option(help="torch intra-op threads (0: torch's default)")] = 0,
    models: Annotated[str, typer.Option(help="comma-separated architectures")] = "mlp,convnet",
    seed: Annotated[int, typer.Option(help="seed of the weights and the digit subset")] = 0,
) -> str:
    """Time per-sample Jacobians and spectral norms; print markdown tables."""
    if threads > 0:
        torch.set_num_threads(threads)
    dev = torch.device(device)
    jac, spec, sources = [], [], set()
    for arch in models.split(","):
        for w in ([int(v) for v in widths.split(",")] if arch == "mlp" else [0]):
            for b in (int(v) for v in batches.split(",")):
                j, s, src = bench(arch.strip(), w, b, side, dev, repeats, loop_samples, seed)
                jac.append(j)
                spec.append(s)
                sources.add(src)
    out = "\n".join([
        header(dev, f"; float32, {NUM_CLASSES} classes, inputs: {', '.join(sorted(sources))}"), "",
        "Per-sample Jacobians: ms per batch, median (min–max); loops scaled from their samples; "
        "error: max |J − J_float64| / max |J_float64|; memory: peak RSS rise, MiB", "",
        "| model | batch | input | method | ms | / ours | error | memory |", "|---|---:|---|---|---:|---:|---:|---:|",
        *jac, "",
        "Spectral norms ‖J‖₂: ms per batch, median (min–max); error relative to the float64 SVD", "",
        "| model | batch | input | method | ms | power / this | iterations | unconverged | max error "
        "| median error |", "|---|---:|---|---|---:|---:|---:|---:|---:|---:|",
        *spec,
    ])  # fmt: skip
    print(out)
    return out


if __name__ == "__main__":
    typer.run(main)
