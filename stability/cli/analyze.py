"""``stability analyze``: load checkpoints (or bare state_dicts), rebuild their data, analyze, report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import torch
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from stability.analysis.curvature import CurvatureOptions, analyze_curvature
from stability.analysis.report import Report, comparison_table, write_json
from stability.analysis.splits import AnalysisOptions, analyze_model, steps_per_analysis
from stability.cli.app import app, err_console, out_console, parse_json_dict, user_errors
from stability.data.bundle import load_data
from stability.data.spec import DataSpec
from stability.errors import BadInputError
from stability.models.spec import ModelSpec
from stability.training.checkpoint import (
    Checkpoint,
    build_model_from_checkpoint,
    checkpoint_from_dict,
    is_state_dict,
    read_checkpoint_file,
)


def resolve_checkpoint(
    path: Path, *, bare: tuple[ModelSpec | None, str | None], unsafe_pickle: bool, data_root: Path | None,
    download: bool,
) -> Checkpoint:
    """A checkpoint, or a bare state_dict completed by ``--arch``/``--arch-kwargs``/``--dataset``."""
    obj = read_checkpoint_file(path, unsafe_pickle=unsafe_pickle)
    model_spec, dataset = bare
    if not is_state_dict(obj) or model_spec is None or dataset is None:
        # A bare state_dict without --arch/--dataset is refused here, with the message that names them.
        return checkpoint_from_dict(obj, source=str(path))
    data_spec = DataSpec(dataset=dataset, data_root=str(data_root) if data_root else None)
    shapes = load_data(data_spec, data_root=data_root, download=download)
    return Checkpoint(model=model_spec, input_shape=shapes.input_shape, num_classes=shapes.num_classes,
                      state_dict=dict(obj), data=data_spec)  # fmt: skip


def run_analyze(
    paths: list[Path], *, json_path: Path | None, plots: Path | None, max_samples: int | None,
    batch_size: int | None, sigma: float, noise_samples: int, seed: int, device: str, data_root: Path | None,
    download: bool, bare: tuple[ModelSpec | None, str | None], unsafe_pickle: bool, progress: bool,
    console: Console, err_console: Console, curvature: bool = True, lr: float | None = None,
    sgd_batch_size: int | None = None, curvature_subset: int = 1000,
) -> list[str]:
    """Analyze every checkpoint, print one comparison table, write JSON and figures.

    Returns the list of estimates that did not converge (for ``--strict``).
    """
    if sigma <= 0 or noise_samples < 1 or (max_samples is not None and max_samples < 1):
        raise BadInputError("--sigma must be positive, --noise-samples and --max-samples at least 1")
    options = AnalysisOptions(max_samples=max_samples, chunk_size=batch_size, sigma=sigma,
                              noise_samples=noise_samples, seed=seed)  # fmt: skip
    # Read every file first, so a bad one fails before minutes of work on the others.
    checkpoints = [resolve_checkpoint(p, bare=bare, unsafe_pickle=unsafe_pickle, data_root=data_root,
                                      download=download) for p in paths]  # fmt: skip
    try:
        torch_device = torch.device(device)
    except RuntimeError:
        raise BadInputError(f"--device {device!r} is not a device name such as cpu, cuda or cuda:1") from None
    reports = []
    labels = _labels(paths)
    with Progress(TextColumn("[bold]analyze"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.description}"), console=err_console, disable=not progress,
                  transient=True) as bar:  # fmt: skip
        task = bar.add_task("", total=steps_per_analysis() * len(checkpoints))
        for label, ckpt, path in zip(labels, checkpoints, paths):
            model = build_model_from_checkpoint(ckpt).to(torch_device)
            data = load_data(ckpt.data, data_root=data_root, download=download)
            loss = ckpt.training.loss if ckpt.training else "cross-entropy"
            analysis = analyze_model(model, data, loss_name=loss, options=options,
                                     advance=lambda text, label=label: bar.update(task, advance=1, description=f"{label} {text}"))  # fmt: skip
            curv = None
            if curvature:
                bar.update(task, description=f"{label} curvature")
                step = lr if lr is not None else (ckpt.training.lr if ckpt.training else None)
                batch = sgd_batch_size if sgd_batch_size is not None else (ckpt.training.batch_size if ckpt.training else 0)
                if step is None:
                    raise BadInputError(f"{path} has no training spec; pass --lr (and --batch-size) for the stability verdicts")
                curv = analyze_curvature(model, data.train, loss=loss, lr=step, batch_size=batch,
                                         options=CurvatureOptions(subset=curvature_subset, chunk_size=batch_size, seed=seed))  # fmt: skip
            reports.append(Report(source=str(path), model=ckpt.model, data=ckpt.data, training=ckpt.training,
                                  epoch=ckpt.epoch, analysis=analysis, curvature=curv))  # fmt: skip
    console.print(comparison_table(reports, labels))
    if json_path is not None:
        write_json(json_path, reports)
        console.print(f"JSON report: {json_path}")
    if plots is not None:
        from stability.analysis.figures import analysis_figures, curvature_figures

        for label, report in zip(labels, reports):
            prefix = label.replace("/", "_") if len(reports) > 1 else ""
            figs = analysis_figures(report.analysis, plots, prefix=prefix, title=label)
            if report.curvature is not None:
                figs += curvature_figures(report.curvature, plots, prefix=prefix, title=label)
            for fig in figs:
                console.print(f"figure: {fig}")
    return [f"{label} {item}" for label, r in zip(labels, reports)
            for item in r.analysis.unconverged + (r.curvature.unconverged if r.curvature else [])]  # fmt: skip


def _labels(paths: list[Path]) -> list[str]:
    """Short distinct names: the file's parent folder for checkpoint.pt files, else the file name."""
    names = [p.parent.name if p.name == "checkpoint.pt" and p.parent.name else p.name for p in paths]
    return names if len(set(names)) == len(names) else [str(p) for p in paths]


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
    from stability.cli.analyze import run_analyze

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
