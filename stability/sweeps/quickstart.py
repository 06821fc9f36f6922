"""The README's first command: one architecture, digits with true and with random labels, side by side.

Zhang et al. (2017) in one minute on a laptop: the same MLP, trained the same way, fits both the real labels
and labels drawn at random, reaching ~100% training accuracy on each; only the first generalizes.
Rerunning skips completed runs (each run resumes from its checkpoint).
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from stability.data.spec import DataSpec
from stability.models.spec import ModelSpec
from stability.sweeps.runs import first_epoch
from stability.training.spec import TrainSpec
from stability.training.train import TrainResult, train

MODEL = ModelSpec(arch="mlp", kwargs={"widths": [512]})


RUNS = {"true labels": "true", "random labels": "random-labels"}


def quickstart_specs(epochs: int) -> tuple[ModelSpec, dict[str, DataSpec], TrainSpec]:
    """The two runs' settings: Adam on full-size digits, with the random-labels run long enough to fit."""
    data = {name: DataSpec(dataset="digits", corruption=corruption, seed=0) for name, corruption in RUNS.items()}
    training = TrainSpec(optimizer="adam", lr=3e-3, batch_size=128, epochs=epochs, checkpoint_every=25, seed=0)
    return MODEL, data, training


def run_quickstart(
    out: str | Path, *, epochs: int = 150, device: str = "cpu", console: Console | None = None
) -> dict[str, TrainResult]:
    """Train both runs (skipping finished ones) and print the training summary.

    Writes ``OUT/{true,random-labels}/`` run folders; ``stability quickstart`` then analyzes both checkpoints.
    """
    console = console or Console()
    model, data_specs, training = quickstart_specs(epochs)
    results = {}
    for name, data in data_specs.items():
        run_dir = Path(out) / data.corruption
        console.print(f"[bold]{name}[/]: {model.arch} {model.kwargs} on {data.dataset} -> {run_dir}")
        results[name] = train(model, data, training, run_dir, device=device, resume=True, progress=True)
    console.print(summary_table(results))
    return results


def summary_table(results: dict[str, TrainResult]) -> Table:
    table = Table(title="digits: the same MLP on true and on random labels")
    table.add_column("")
    for name in results:
        table.add_column(name, justify="right")
    rows = [
        ("epochs", lambda r: f"{r.final['epoch']:.0f}"),
        ("train accuracy", lambda r: f"{r.final['train_acc']:.3f}"),
        ("train accuracy (true labels)", lambda r: f"{r.final['train_acc_true']:.3f}"),
        ("test accuracy", lambda r: f"{r.final['test_acc']:.3f}"),
        ("generalization gap", lambda r: f"{r.final['train_acc'] - r.final['test_acc']:.3f}"),
        ("train loss", lambda r: f"{r.final['train_loss']:.4f}"),
        ("first epoch at 99% train acc", lambda r: _first_epoch(r, 0.99)),
        ("training seconds", lambda r: f"{r.final['seconds']:.1f}"),
        ("checkpoint", lambda r: str(r.checkpoint_path)),
    ]
    for label, cell in rows:
        table.add_row(label, *(cell(r) for r in results.values()))
    return table


def _first_epoch(result: TrainResult, level: float) -> str:
    hit = first_epoch(result.history, "train_acc", level)
    return "not reached" if hit is None else str(hit)
