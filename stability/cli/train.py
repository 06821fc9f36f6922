"""``stability train``: one run under the papers' protocols."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from stability.cli.app import _choices, app, out_console, parse_json_dict, user_errors
from stability.data.spec import CORRUPTIONS, PREPROCESSING, DataSpec
from stability.models.spec import ModelSpec
from stability.training.spec import LOSSES, OBJECTIVES, OPTIMIZERS, TrainSpec


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
    from stability.training.loop import train as run_training

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
