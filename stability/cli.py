"""The ``stability`` command line: train, analyze, and the quickstart that shows both.

Exit codes: 0 success; 1 the analysis found a problem the user asked to fail on; 2 bad input (unreadable or
untrusted checkpoint, unknown architecture, missing dataset files, ...), with one line saying what and how
to fix it.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from .errors import BadInputError, StabilityError
from .specs import CORRUPTIONS, LOSSES, OBJECTIVES, OPTIMIZERS, PREPROCESSING, DataSpec, ModelSpec, TrainSpec

app = typer.Typer(
    name="stability",
    help="Measure why trained networks generalize: input and parameter stability of real checkpoints.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out_console = Console()
err_console = Console(stderr=True)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn the toolkit's input errors into one line on stderr and exit code 2."""
    try:
        yield
    except (BadInputError, StabilityError) as exc:
        err_console.print(f"[bold red]error:[/] {exc}", markup=True, highlight=False, soft_wrap=True)
        raise typer.Exit(code=2) from None


def parse_json_dict(text: str, option: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadInputError(f"{option} must be a JSON object such as '{{\"widths\": [512]}}': {exc.msg}") from None
    if not isinstance(value, dict):
        raise BadInputError(f"{option} must be a JSON object such as '{{\"widths\": [512]}}', got {text!r}")
    return value


def _choices(values: tuple[str, ...]) -> str:
    return ", ".join(values)


@app.command()
def train(
    out: Annotated[Path, typer.Option(help="Run folder: config.json, metrics.jsonl, checkpoint.pt.")],
    dataset: Annotated[str, typer.Option(help="digits (embedded), mnist1d, mnist, fashion-mnist, cifar10, cifar100.")] = "digits",
    data_root: Annotated[Optional[Path], typer.Option(help="Folder with on-disk datasets (torchvision layout).")] = None,
    download: Annotated[bool, typer.Option(help="Fetch a missing on-disk dataset (checksums verified).")] = False,
    n_train: Annotated[Optional[int], typer.Option(help="Training samples (seeded subset). Default: all.")] = None,
    n_test: Annotated[Optional[int], typer.Option(help="Test samples (seeded subset). Default: all.")] = None,
    n_heldout: Annotated[int, typer.Option(help="Held-out samples for gradient splitting, disjoint from train and test.")] = 0,
    corruption: Annotated[str, typer.Option(help=f"Randomization test: {_choices(CORRUPTIONS)}.")] = "true",
    corruption_prob: Annotated[float, typer.Option(help="p for partial-labels.")] = 0.0,
    noise_fraction: Annotated[float, typer.Option(help="Noise mixing 1 - phi: x' = phi x + (1 - phi) eps.")] = 0.0,
    preprocess: Annotated[str, typer.Option(help=f"{_choices(PREPROCESSING)}.")] = "standardize",
    center_crop: Annotated[Optional[int], typer.Option(help="Centre-crop images to this side (pixels).")] = None,
    data_seed: Annotated[int, typer.Option(help="Seed of subsets, corruptions and noise.")] = 0,
    arch: Annotated[str, typer.Option(help="Architecture (see `stability list`).")] = "mlp",
    arch_kwargs: Annotated[str, typer.Option(help="Architecture keyword arguments as JSON.")] = "{}",
    loss: Annotated[str, typer.Option(help=f"{_choices(LOSSES)}.")] = "cross-entropy",
    objective: Annotated[str, typer.Option(help=f"{_choices(OBJECTIVES)} (split: L_train - L_heldout).")] = "standard",
    split_threshold: Annotated[Optional[float], typer.Option(help="Held-out accuracy below which splitting pauses. Default 1.1/classes.")] = None,
    split_start: Annotated[int, typer.Option(help="With --objective split: first epoch that may split (earlier epochs train plainly).")] = 0,
    split_stop: Annotated[Optional[int], typer.Option(help="With --objective split: epoch from which training is plain again. Default: never.")] = None,
    optimizer: Annotated[str, typer.Option(help=f"{_choices(OPTIMIZERS)}.")] = "sgd",
    lr: Annotated[float, typer.Option(help="Learning rate at epoch 0.")] = 0.01,
    momentum: Annotated[float, typer.Option(help="SGD momentum.")] = 0.9,
    weight_decay: Annotated[float, typer.Option(help="L2 weight decay.")] = 0.0,
    lr_decay: Annotated[float, typer.Option(help="Learning-rate factor applied after every epoch.")] = 1.0,
    batch_size: Annotated[int, typer.Option(help="Minibatch size; 0 = full batch.")] = 64,
    epochs: Annotated[int, typer.Option(help="Epochs.")] = 10,
    augment: Annotated[bool, typer.Option(help="Random crops and flips of images.")] = False,
    augment_flip: Annotated[bool, typer.Option(help="With --augment, also flip images horizontally (--no-augment-flip: crops alone).")] = True,
    checkpoint_every: Annotated[int, typer.Option(help="Write a resumable checkpoint every N epochs.")] = 10,
    seed: Annotated[int, typer.Option(help="Seed of initialization, batch order and augmentation.")] = 0,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out from its last checkpoint.")] = False,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:1, mps, ...")] = "cpu",
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Train a classifier under one of the papers' protocols and write a checkpoint."""
    from .train import train as run_training

    with user_errors():
        data_spec = DataSpec(
            dataset=dataset, data_root=str(data_root) if data_root else None, n_train=n_train, n_test=n_test,
            n_heldout=n_heldout, corruption=corruption, corruption_prob=corruption_prob,
            noise_fraction=noise_fraction, preprocess=preprocess, center_crop=center_crop, seed=data_seed,
        )  # fmt: skip
        model_spec = ModelSpec(arch=arch, kwargs=parse_json_dict(arch_kwargs, "--arch-kwargs"))
        train_spec = TrainSpec(
            loss=loss, objective=objective, split_threshold=split_threshold, split_start=split_start,
            split_stop=split_stop, optimizer=optimizer, lr=lr,
            momentum=momentum, weight_decay=weight_decay, lr_decay=lr_decay, batch_size=batch_size,
            epochs=epochs, augment=augment, augment_flip=augment_flip, checkpoint_every=checkpoint_every, seed=seed,
        )  # fmt: skip
        result = run_training(
            model_spec, data_spec, train_spec, out, device=device, resume=resume, download=download,
            progress=progress,
        )  # fmt: skip
    final = result.final
    out_console.print(
        f"epoch {final['epoch']}: train acc {final['train_acc']:.4f} (true labels {final['train_acc_true']:.4f}), "
        f"test acc {final['test_acc']:.4f} -> {result.checkpoint_path}"
    )


@app.command("list")
def list_things() -> None:
    """List the datasets, architectures and corruptions."""
    from .data import DATASETS
    from .models import describe_architectures

    table = Table(title="architectures", show_header=False)
    for name, text in describe_architectures().items():
        table.add_row(name, text)
    out_console.print(table)
    out_console.print(f"datasets: {', '.join(DATASETS)}")
    out_console.print(f"corruptions: {', '.join(CORRUPTIONS)}")


@app.command()
def analyze(
    checkpoints: Annotated[list[Path], typer.Argument(help="Checkpoints written by `stability train` (or bare state_dicts with --arch/--dataset).")],
    json_path: Annotated[Optional[Path], typer.Option("--json", help="Write the report as JSON (schema in docs/cli.md).")] = None,
    plots: Annotated[Optional[Path], typer.Option(help="Write figures (PNG) into this folder.")] = None,
    max_samples: Annotated[int, typer.Option(help="Samples analyzed per split (seeded subset); 0 = all.")] = 1000,
    chunk_size: Annotated[int, typer.Option(help="Samples per vmap chunk and per curvature chunk (bounds memory); 0 = all at once.")] = 0,
    curvature: Annotated[bool, typer.Option(help="Also report curvature, stability verdicts and bounds (on the training split).")] = True,
    lr: Annotated[Optional[float], typer.Option(help="Step size for the GD/SGD verdicts. Default: the checkpoint's.")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Batch size for the SGD verdict (0 = full batch). Default: the checkpoint's.")] = None,
    curvature_samples: Annotated[int, typer.Option(help="Training samples the curvature is evaluated on (seeded subset).")] = 1000,
    sigma: Annotated[float, typer.Option(help="Noise scale for the finite-noise measures, in input units.")] = 0.1,
    noise_samples: Annotated[int, typer.Option(help="Noisy copies per sample.")] = 16,
    seed: Annotated[int, typer.Option(help="Seed of the subset and of every random draw.")] = 0,
    device: Annotated[str, typer.Option(help="cpu, cuda, ...")] = "cpu",
    data_root: Annotated[Optional[Path], typer.Option(help="Where on-disk datasets live on this machine.")] = None,
    download: Annotated[bool, typer.Option(help="Fetch a missing on-disk dataset.")] = False,
    arch: Annotated[Optional[str], typer.Option(help="For a bare state_dict: the architecture.")] = None,
    arch_kwargs: Annotated[str, typer.Option(help="For a bare state_dict: architecture kwargs as JSON.")] = "{}",
    dataset: Annotated[Optional[str], typer.Option(help="For a bare state_dict: the dataset it was trained on.")] = None,
    unsafe_pickle: Annotated[bool, typer.Option("--unsafe-pickle", help="Allow arbitrary pickles. RUNS CODE FROM THE FILE: only for files you made.")] = False,
    strict: Annotated[bool, typer.Option(help="Exit 1 if an iterative estimate did not converge.")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Measure accuracy, loss and input sensitivity of checkpoints on their own train and test data."""
    from .analyze_cmd import run_analyze

    with user_errors():
        bare = (ModelSpec(arch, parse_json_dict(arch_kwargs, "--arch-kwargs")) if arch else None, dataset)
        failed = run_analyze(
            checkpoints, json_path=json_path, plots=plots, max_samples=max_samples or None,
            batch_size=chunk_size or None, sigma=sigma, noise_samples=noise_samples, seed=seed, device=device,
            data_root=data_root, download=download, bare=bare, unsafe_pickle=unsafe_pickle, progress=progress,
            console=out_console, err_console=err_console, curvature=curvature, lr=lr, sgd_batch_size=batch_size,
            curvature_subset=curvature_samples,
        )  # fmt: skip
    if strict and failed:
        err_console.print(f"[bold red]not converged:[/] {'; '.join(failed)}")
        raise typer.Exit(code=1)


@app.command()
def demo(
    name: Annotated[Optional[str], typer.Argument(help="Toy model to run (see --list).")] = None,
    out: Annotated[Path, typer.Option(help="Folder for the figures (PNG).")] = Path("runs/demo"),
    json_path: Annotated[Optional[Path], typer.Option("--json", help="Write derived and measured quantities as JSON.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of sampled starting points and data.")] = 0,
    list_: Annotated[bool, typer.Option("--list", help="List the toy models, one line each.")] = False,
) -> None:
    """Run gradient descent on a toy model with closed forms, and draw what the theory predicts."""
    from .toy import DEMOS, run_demo

    if list_ or name is None:
        for info in DEMOS.values():
            out_console.print(f"[bold]{info.name}[/]  {info.description}", highlight=False)
        if name is None and not list_:
            err_console.print("pass a name, e.g. `stability demo tanh-two-point`")
            raise typer.Exit(code=2)
        return
    with user_errors():
        result = run_demo(name, out / name, seed=seed)
    for fig in result.get("figures", []):
        out_console.print(f"figure: {out / name / fig}")
    if json_path is not None:
        from .checkpoint import atomic_write
        from .report import json_safe

        text = json.dumps(json_safe(result), indent=2, default=str) + "\n"
        atomic_write(json_path, lambda fh: fh.write(text.encode()))
        out_console.print(f"JSON: {json_path}")
    else:
        out_console.print_json(json.dumps(_summary(result), default=str))


def _summary(result: dict) -> dict:
    return {k: result[k] for k in ("demo", "derived", "measured", "agreement") if k in result}


@app.command()
def quickstart(
    out: Annotated[Path, typer.Option(help="Folder for the two runs.")] = Path("runs/quickstart"),
    epochs: Annotated[int, typer.Option(help="Epochs for each run.")] = 150,
    device: Annotated[str, typer.Option(help="cpu, cuda, ...")] = "cpu",
) -> None:
    """Train the same MLP on digits with true and with random labels, and compare them side by side."""
    from .quickstart import run_quickstart

    with user_errors():
        run_quickstart(out, epochs=epochs, device=device, console=out_console)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
