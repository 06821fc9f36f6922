"""Per-sample input Jacobians: ``vmap(jacrev)`` against a per-sample autograd loop and the C-VJP limit.

Three ways to get ``J(x_i) = ∂f(x_i)/∂x_i`` for every sample of a batch of ``B`` digits-shaped inputs
``(1, 8, 8)`` through a 10-class model in eval mode:

(a) ours: :func:`stability.sensitivity.input_jacobian` (``vmap`` over samples of ``jacrev(f.single)``
    with its default ``vjp_chunk_size=1``: the ``C`` VJPs run one after another, each batched over
    samples; argument checks and the one-sample probe included); (a') the same with
    ``vjp_chunk_size=None``, all ``C`` VJPs at once under a second ``vmap`` over cotangents;
(b) loop: per sample, one forward pass and ``C`` ``torch.autograd.grad`` calls; timed on the first
    ``--loop-samples`` samples and scaled by ``B / loop_samples`` (stated in the table);
(c) limit: one forward pass of the whole batch and ``C`` batched VJPs, ``torch.autograd.grad`` of the
    batch-summed output ``c`` for each class. Valid only because samples are independent in eval mode;
    it is what a hand-written batched Jacobian costs, and the target ours is measured against.

All four are checked to agree before timing. Times are medians over ``--repeats`` rounds after one
warm-up round; within a round the methods run one after another, so a shared machine's load hits all
alike. Nothing is asserted about speed: the script prints a markdown table of the ratios it measured.

    python benchmarks/bench_jacobians.py --device cpu --batch 512 --repeats 5
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

import torch
import typer
from torch import Tensor, nn

from stability.functional import functionalize
from stability.models.registry import build_model  # noqa: E402
from stability.models.spec import ModelSpec  # noqa: E402
from stability.sensitivity.jacobian import input_jacobian

INPUT_SHAPE = (1, 8, 8)
NUM_CLASSES = 10


@dataclass(frozen=True)
class Row:
    """One model's timings (seconds per batch of ``batch`` samples) and the ratios derived from them."""

    model: str
    source: str
    num_params: int
    batch: int
    ours_s: float
    ours_all_rows_s: float
    loop_s: float
    limit_s: float
    loop_samples: int
    max_abs_diff: float

    @property
    def speedup_vs_loop(self) -> float:
        return self.loop_s / self.ours_s

    @property
    def ratio_to_limit(self) -> float:
        return self.ours_s / self.limit_s


def build(arch: str, seed: int) -> tuple[nn.Module, str]:
    """The registry's model, initialized from ``seed`` without touching the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_model(ModelSpec(arch), INPUT_SHAPE, NUM_CLASSES), "stability.models"


def loop_jacobians(module: nn.Module, x: Tensor) -> Tensor:
    """Baseline (b): one sample at a time, one ``autograd.grad`` per output."""
    rows = []
    for i in range(x.shape[0]):
        xi = x[i : i + 1].detach().requires_grad_(True)
        out = module(xi)[0]
        C = out.shape[0]
        rows.append(
            torch.stack([torch.autograd.grad(out[c], xi, retain_graph=c < C - 1)[0][0] for c in range(C)])
        )
    return torch.stack(rows)


def limit_jacobians(module: nn.Module, x: Tensor) -> Tensor:
    """Limit (c): ``C`` batched VJPs; row ``c`` of every sample's Jacobian is ``∇_x Σ_i f_c(x_i)``."""
    xg = x.detach().requires_grad_(True)
    out = module(xg)
    C = out.shape[1]
    return torch.stack(
        [torch.autograd.grad(out[:, c].sum(), xg, retain_graph=c < C - 1)[0] for c in range(C)], dim=1
    )


def median_times(
    fns: dict[str, Callable[[], object]], repeats: int, device: torch.device
) -> dict[str, float]:
    """Median wall time of each function over ``repeats`` rounds after one warm-up round.

    The functions run round-robin within each round, so load from other processes on a shared machine
    slows all of them alike instead of whichever happened to run at the time.
    """

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    times: dict[str, list[float]] = {name: [] for name in fns}
    for round_ in range(repeats + 1):
        for name, fn in fns.items():
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            if round_ > 0:
                times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def bench_model(
    arch: str, device: torch.device, batch: int, repeats: int, loop_samples: int, seed: int
) -> Row:
    module, source = build(arch, seed)
    module = module.to(device).eval()
    for p in module.parameters():
        p.requires_grad_(False)  # baselines differentiate with respect to the input only, as ours does
    fm = functionalize(module)
    gen = torch.Generator(device=device).manual_seed(seed)
    x = torch.randn((batch, *INPUT_SHAPE), generator=gen, device=device)
    n_loop = min(loop_samples, batch)

    ours = input_jacobian(fm, x)
    all_rows = input_jacobian(fm, x, vjp_chunk_size=None)
    limit = limit_jacobians(module, x)
    loop = loop_jacobians(module, x[:n_loop])
    scale = ours.abs().max().item()
    diff = (
        max(
            (ours - limit).abs().max().item(),
            (all_rows - limit).abs().max().item(),
            (ours[:n_loop] - loop).abs().max().item(),
        )
        / scale
    )
    if not diff < 1e-4:
        raise RuntimeError(f"{arch}: the Jacobians disagree (max relative difference {diff:.2e})")

    t = median_times(
        {
            "ours": lambda: input_jacobian(fm, x),
            "ours_all_rows": lambda: input_jacobian(fm, x, vjp_chunk_size=None),
            "limit": lambda: limit_jacobians(module, x),
            "loop": lambda: loop_jacobians(module, x[:n_loop]),
        },
        repeats,
        device,
    )
    ours_s, limit_s, loop_s = t["ours"], t["limit"], t["loop"] * batch / n_loop
    return Row(arch, source, fm.num_params, batch, ours_s, t["ours_all_rows"], loop_s, limit_s, n_loop, diff)


def markdown(rows: list[Row], device: torch.device) -> str:
    lines = [
        (
            f"device: {device}, torch {torch.__version__}, {torch.get_num_threads()} threads, float32, "
            f"input (1, 8, 8), {NUM_CLASSES} classes; medians over repeats, times per batch"
        ),
        "",
        (
            "| model | params | batch | (a) ours | (a') ours, all rows at once | (b) loop (scaled) "
            "| (c) C-VJP limit | loop / ours | ours / limit | (a') / limit |"
        ),
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.model} ({r.source}) | {r.num_params:,} | {r.batch} | {r.ours_s * 1e3:.1f} ms "
            f"| {r.ours_all_rows_s * 1e3:.1f} ms | {r.loop_s * 1e3:.0f} ms (from {r.loop_samples} samples) "
            f"| {r.limit_s * 1e3:.1f} ms | {r.speedup_vs_loop:.1f}x | {r.ratio_to_limit:.2f}x "
            f"| {r.ours_all_rows_s / r.limit_s:.2f}x |"
        )
    return "\n".join(lines)


def main(
    device: Annotated[str, typer.Option(help="torch device to run on, e.g. cpu or cuda")] = "cpu",
    batch: Annotated[int, typer.Option(help="samples per batch")] = 512,
    repeats: Annotated[int, typer.Option(help="timed repetitions per method (median reported)")] = 5,
    loop_samples: Annotated[
        int, typer.Option(help="samples the per-sample loop is timed on, then scaled")
    ] = 32,
    threads: Annotated[int, typer.Option(help="torch intra-op threads (0: leave torch's default)")] = 0,
    models: Annotated[str, typer.Option(help="comma-separated architectures")] = "mlp,convnet",
    seed: Annotated[int, typer.Option(help="seed of the weights and the inputs")] = 0,
) -> list[Row]:
    """Time per-sample input Jacobians three ways and print a markdown table of the measured ratios."""
    if threads > 0:
        torch.set_num_threads(threads)
    dev = torch.device(device)
    rows = [bench_model(a.strip(), dev, batch, repeats, loop_samples, seed) for a in models.split(",")]
    print(markdown(rows, dev))
    return rows


if __name__ == "__main__":
    typer.run(main)
