"""GPU readiness in one command (``make gpu-check``), written as one markdown report.

1. The CUDA tests: every test of the suite that is skipped without a CUDA device (its ``skipif`` reason
   names CUDA), run on this machine; on a machine without CUDA they are reported as skipped.
2. The GPU benchmark ``benchmarks/bench_gpu.py``, if it is present (its own table).
3. The fit-noise timing (:mod:`benchmarks.bench_fit_noise`): 50,000 Gaussian 3x32x32 images with random
   labels, small Inception, SGD, until 100% training accuracy or the time cap.

On one H100/H200 the three are sized to finish within 8 minutes: each step is stopped at its cap (tests
60 s, benchmark 240 s, fit 90 s of training + 30 s), and the report gives each step's wall time. Without
CUDA, or with ``--quick``, it runs the same steps tiny on the CPU (the benchmark at ``--quick``, the fit
on 32 images), which is what the test suite exercises.

    python -m benchmarks.gpu_check --out runs/gpu-check.md     # or: make gpu-check
    python -m benchmarks.gpu_check --quick --out /tmp/gpu.md    # the CPU smoke run
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

import torch
import typer

ROOT = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(config, items) -> None:  # noqa: ANN001 - the pytest hook, when used as a plugin
    """As a pytest plugin (``-p benchmarks.gpu_check``): keep only the tests that need CUDA."""
    keep = [item for item in items if _needs_cuda(item)]
    config.hook.pytest_deselected(items=[item for item in items if item not in keep])
    items[:] = keep


def _needs_cuda(item) -> bool:  # noqa: ANN001
    return any("cuda" in str(mark.kwargs.get("reason", "")).lower() for mark in item.iter_markers("skipif"))


def run_step(cmd: list[str], timeout: float) -> tuple[int, str, float]:
    """``(exit code, output, seconds)`` of one step; a step past ``timeout`` is stopped and reported."""
    t0 = time.perf_counter()
    try:
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
        code, output = done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired as exc:
        code, output = 124, f"stopped after {timeout:.0f} s\n{exc.stdout or ''}"
    return code, output, time.perf_counter() - t0


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def main(
    out: Annotated[Path, typer.Option(help="The markdown report.")] = Path("runs/gpu-check.md"),
    quick: Annotated[bool, typer.Option(help="Tiny CPU run of every step (default without CUDA).")] = False,
    time_cap: Annotated[float, typer.Option(min=1, help="Seconds the fit-noise run may train (GPU).")] = 90.0,
) -> None:
    cuda = torch.cuda.is_available()
    quick = quick or not cuda
    started = time.perf_counter()
    py = sys.executable
    name = torch.cuda.get_device_name() if cuda else f"no CUDA device ({os.cpu_count()} CPUs)"
    sections = [
        "# GPU readiness",
        "",
        f"{name}; torch {torch.__version__} (CUDA {torch.version.cuda}), Python {platform.python_version()}; "
        f"{'quick CPU run' if quick else 'full run'}; 1-minute load average at start {os.getloadavg()[0]:.2f}",
        "",
    ]
    failed = []

    code, output, secs = run_step([py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "benchmarks.gpu_check",
                                   "tests"], timeout=60)  # fmt: skip
    summary = (re.findall(r"^=*\s*(\d+ (?:passed|failed|skipped|error).*?)\s*=*$", output, flags=re.M) or [_tail(output, 1)])[-1]
    if code not in (0, 5) or "failed" in summary or "error" in summary:
        failed.append("CUDA tests")
    sections += [f"## CUDA tests ({secs:.0f} s)", "", f"`pytest -p benchmarks.gpu_check tests`: {summary}"
                 + ("" if cuda else " (no CUDA device here: skipped)"), ""]  # fmt: skip
    if code not in (0, 5):
        sections += ["```", _tail(output, 30), "```", ""]

    sections += ["## GPU benchmark", ""]
    if (ROOT / "benchmarks" / "bench_gpu.py").exists():
        table = Path(out).with_suffix(".bench_gpu.md")
        args = ["--device", "cpu", "--quick"] if quick else ["--device", "cuda"]
        code, output, secs = run_step([py, "-m", "benchmarks.bench_gpu", *args, "--out", str(table)], timeout=240)
        if code == 0 and table.exists():
            sections += [f"`python -m benchmarks.bench_gpu {' '.join(args)}` ({secs:.0f} s)", "", table.read_text().rstrip(), ""]
            table.unlink()
        else:
            failed.append("GPU benchmark")
            sections += [f"failed (exit {code}, {secs:.0f} s):", "```", _tail(output, 30), "```", ""]
    else:
        sections += ["benchmarks/bench_gpu.py is not in this checkout: skipped.", ""]

    fit_args = ["--device", "cpu", "--n", "32", "--time-cap", "5"] if quick else ["--device", "cuda", "--time-cap", str(time_cap)]
    code, output, secs = run_step([py, "-m", "benchmarks.bench_fit_noise", *fit_args], timeout=time_cap + 30)
    sections += [f"## Fitting noise (Zhang et al. 2017), {secs:.0f} s", "",
                 f"`python -m benchmarks.bench_fit_noise {' '.join(fit_args)}`: small Inception, SGD lr 0.1 momentum 0.9 "
                 "x0.95/epoch, batch 128, accuracy checked after each epoch", ""]  # fmt: skip
    if code == 0:
        sections += [output.strip(), ""]
    else:
        failed.append("fit-noise timing")
        sections += [f"failed (exit {code}):", "```", _tail(output, 30), "```", ""]

    total = time.perf_counter() - started
    sections += [f"Total: {total:.0f} s. " + (f"Failed: {', '.join(failed)}." if failed else "Every step passed.")]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(sections) + "\n", encoding="utf-8")
    typer.echo(f"wrote {out} ({total:.0f} s)" + (f"; failed: {', '.join(failed)}" if failed else ""))
    if failed:
        raise typer.Exit(1)


if __name__ == "__main__":
    typer.run(main)
