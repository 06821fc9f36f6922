"""What every benchmark here shares: models, real digit inputs, interleaved timing, peak memory, the header.

- :func:`build` — the registry's ``mlp`` (any widths) or ``convnet`` for an input shape, seeded without
  touching the global RNG.
- :func:`digits` — the first ``n`` standardized scikit-learn digits, ``(n, 1, 8, 8)``, or the same digits
  bilinearly upsampled to ``(n, 1, 28, 28)`` (MNIST-sized inputs with real pixel statistics, max-pool ties
  included); seeded Gaussian stand-ins only if the digits cannot be loaded, and the table says so.
- :func:`interleaved` — every method once per round, rounds repeated, so a shared machine's load hits all
  methods alike; median and the spread (min–max) per method.
- :func:`peak_rss` — the rise of the process's peak resident memory during one call (Linux
  ``/proc/self/clear_refs`` + ``VmHWM``), the CPU counterpart of ``torch.cuda.max_memory_allocated``.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stability.models.registry import build_model
from stability.models.spec import ModelSpec

NUM_CLASSES = 10


def build(arch: str, input_shape: tuple[int, ...], seed: int, width: int = 512) -> nn.Module:
    """The registry's model in eval mode, initialized from ``seed`` without touching the global RNG."""
    spec = ModelSpec(arch, {"widths": [width]}) if arch == "mlp" else ModelSpec(arch)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_model(spec, input_shape, NUM_CLASSES).eval()


def digits(n: int, side: int = 8, seed: int = 0) -> tuple[Tensor, Tensor, str]:
    """``(x, y, source)``: ``n`` standardized training digits, ``(n, 1, side, side)`` (8 or upsampled)."""
    try:
        from stability.data.bundle import load_data
        from stability.data.spec import DataSpec

        split = load_data(DataSpec(dataset="digits", n_train=min(n, 1437), seed=seed)).train
        x, y, source = split.x, split.y, "digits"
        if x.shape[0] < n:  # more than the 1,437 training digits: repeat them
            reps = -(-n // x.shape[0])
            x, y = x.repeat(reps, 1, 1, 1)[:n], y.repeat(reps)[:n]
            source = "digits (repeated)"
    except Exception:  # noqa: BLE001 - any failure to load falls back to synthetic data, stated in the table
        gen = torch.Generator().manual_seed(seed)
        x, y, source = torch.randn(n, 1, 8, 8, generator=gen), torch.randint(0, NUM_CLASSES, (n,), generator=gen), "gaussian"
    if side != 8:
        x = F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False)
        source += f" {side}x{side}"
    return x.contiguous(), y, source


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass(frozen=True)
class Timing:
    """Seconds per call of one method: median and spread over the timed rounds."""

    median: float
    low: float
    high: float
    rounds: int

    def ms(self) -> str:
        return f"{self.median * 1e3:.1f} ({self.low * 1e3:.1f}–{self.high * 1e3:.1f})"

    def s(self) -> str:
        return f"{self.median:.2f} ({self.low:.2f}–{self.high:.2f})"


def interleaved(fns: dict[str, Callable[[], Any]], repeats: int, device: torch.device) -> dict[str, Timing]:
    """Time each function ``repeats`` times after one warm-up round, the functions taking turns each round."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for round_ in range(repeats + 1):
        for name, fn in fns.items():
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            if round_ > 0:
                times[name].append(time.perf_counter() - t0)
    return {k: Timing(statistics.median(v), min(v), max(v), len(v)) for k, v in times.items()}


def _hwm_kib() -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def peak_rss(fn: Callable[[], Any]) -> float | None:
    """MiB by which the peak resident memory rose above the current resident memory while ``fn`` ran."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")  # resets VmHWM to the current resident size
    except OSError:
        return None
    before = _hwm_kib()
    fn()
    after = _hwm_kib()
    return None if before is None or after is None else (after - before) / 1024


def header(device: torch.device, extra: str = "") -> str:
    """One line of provenance: device, torch, threads, load."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{os.cpu_count()} CPUs"
    return (f"device: {device} ({name}), torch {torch.__version__}, {torch.get_num_threads()} intra-op threads, "
            f"1-minute load average at start {load:.2f}{extra}")
