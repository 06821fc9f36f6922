"""How fast the training loop fits pure noise: Zhang et al.'s (2017) Gaussian-input test, with no data files.

``n`` Gaussian images ``3x32x32`` (standard normal pixels, seeded) with labels drawn uniformly from 10
classes, Zhang et al.'s small Inception, SGD (lr 0.1, momentum 0.9, x0.95 per epoch, batch 128: their
CIFAR-10 settings), trained by the library's own loop (data resident on the device, index batching) until
the training accuracy, measured after each epoch, is 100% or the time cap is reached. Reports the
training throughput (images per second, optimizer steps only), and the time to fit (training and the
per-epoch evaluations) or the accuracy reached at the cap.

    python -m benchmarks.bench_fit_noise --time-cap 90           # 50,000 images on the GPU
    python -m benchmarks.bench_fit_noise --device cpu --n 256 --time-cap 20    # a CPU smoke run
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated

import torch
import typer

from stability.data.bundle import DataBundle, Split
from stability.models.spec import ModelSpec
from stability.training.spec import TrainSpec
from stability.training.train import _Run, evaluate

NUM_CLASSES = 10


@dataclass(frozen=True)
class FitNoise:
    """What one fit-noise timing found."""

    n: int
    device: str
    epochs: int
    steps: int
    train_seconds: float  # optimizer steps only
    wall_seconds: float  # steps and the per-epoch evaluations
    train_acc: float
    fitted: bool
    time_cap: float

    @property
    def images_per_second(self) -> float:
        return self.n * self.epochs / self.train_seconds if self.train_seconds else float("nan")

    def markdown(self) -> str:
        fit = (f"{self.wall_seconds:.1f} s ({self.epochs} epochs, {self.steps} steps)" if self.fitted
               else f"not within the {self.time_cap:.0f} s cap: {self.train_acc:.1%} after {self.epochs} epochs")  # fmt: skip
        return "\n".join([
            "| images | device | images/s (training) | time to 100% train accuracy | final train accuracy |",
            "|---|---|---|---|---|",
            f"| {self.n:,} Gaussian 3x32x32, random labels | {self.device} | {self.images_per_second:,.0f} | {fit} "
            f"| {self.train_acc:.4f} |",
        ])  # fmt: skip


def noise_bundle(n: int, seed: int, device: torch.device) -> DataBundle:
    """``n`` standard-normal ``3x32x32`` images with uniform random labels, generated on ``device``."""
    gen = torch.Generator(device=device).manual_seed(seed)
    x = torch.randn(n, 3, 32, 32, generator=gen, device=device)
    y = torch.randint(0, NUM_CLASSES, (n,), generator=gen, device=device)
    split = Split(x, y, y, torch.arange(n, device=device))
    return DataBundle(spec=None, train=split, test=None, heldout=None, num_classes=NUM_CLASSES, input_shape=(3, 32, 32))


def fit_noise(n: int = 50_000, *, device: str = "cuda", time_cap: float = 150.0, seed: int = 0,
              batch_size: int = 128) -> FitNoise:  # fmt: skip
    """Train until 100% training accuracy or ``time_cap`` seconds (checked after each epoch)."""
    dev = torch.device(device)
    data = noise_bundle(n, seed, dev)
    spec = TrainSpec(optimizer="sgd", lr=0.1, momentum=0.9, lr_decay=0.95, batch_size=batch_size, epochs=10**6, seed=seed)
    run = _Run(ModelSpec("small-inception"), data, spec, dev)
    train_seconds, acc = 0.0, 0.0
    start = time.perf_counter()
    while acc < 1.0 and time.perf_counter() - start < time_cap:
        _sync(dev)
        t0 = time.perf_counter()
        run.train_epoch()
        _sync(dev)
        train_seconds += time.perf_counter() - t0
        acc = evaluate(run.model, data.train, spec.loss)["acc"]
    wall = time.perf_counter() - start
    return FitNoise(n, str(dev), run.epoch, run.step, train_seconds, wall, acc, acc >= 1.0, time_cap)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(
    n: Annotated[int, typer.Option(min=1, help="Gaussian images (Zhang et al.: 50,000)")] = 50_000,
    device: Annotated[str, typer.Option(help="cuda (default when available) or cpu")] = "",
    time_cap: Annotated[float, typer.Option(min=1, help="seconds of training (with evaluations) at most")] = 150.0,
    seed: Annotated[int, typer.Option(help="seed of the images, labels, initialization and batch order")] = 0,
) -> str:
    """Print one markdown table row: throughput and time to fit."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest convolutions
    table = fit_noise(n, device=device, time_cap=time_cap, seed=seed).markdown()
    typer.echo(table)
    return table


if __name__ == "__main__":
    typer.run(main)
