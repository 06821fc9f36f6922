"""``stability train``: one run under the papers' protocols, its options the fields of the three specs."""

from __future__ import annotations

from typing import Annotated

import typer

from stability.cli.app import app, err_console, out_console, user_errors
from stability.cli.options import Options, config_command
from stability.data.spec import CORRUPTIONS, PREPROCESSING, DataSpec
from stability.models.spec import ModelSpec
from stability.training.spec import OBJECTIVES, OPTIMIZERS, TrainSpec

DATA = Options(DataSpec, rename={"seed": "data_seed"}, choices={"corruption": CORRUPTIONS, "preprocess": PREPROCESSING})


MODEL = Options(ModelSpec, rename={"kwargs": "arch_kwargs"})


TRAINING = Options(TrainSpec, choices={"objective": OBJECTIVES, "optimizer": OPTIMIZERS})


@app.command()
@config_command(data=DATA, model=MODEL, training=TRAINING)
def train(
    out: Annotated[str, typer.Option(help="Run folder: config.json, metrics.jsonl, checkpoint.pt.")],
    download: Annotated[bool, typer.Option(help="Fetch a missing on-disk dataset (checksums verified).")] = False,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out from its last checkpoint.")] = False,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:1, mps, ...")] = "cpu",
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    *,
    data: DataSpec,
    model: ModelSpec,
    training: TrainSpec,
) -> None:
    """Train a classifier under one of the papers' protocols and write a checkpoint."""
    from stability.training.train import train as run_training

    with user_errors({**train.flags, "out_dir": "--out"}):
        result = run_training(model, data, training, out, device=device, resume=resume, download=download,
                              progress=progress)  # fmt: skip
    for note in result.notes:
        err_console.print(f"note: {note}", highlight=False, soft_wrap=True)
    final = result.final
    out_console.print(
        f"epoch {final['epoch']}: train acc {final['train_acc']:.4f} (true labels {final['train_acc_true']:.4f}), "
        f"test acc {final['test_acc']:.4f} -> {result.checkpoint_path}"
    )
