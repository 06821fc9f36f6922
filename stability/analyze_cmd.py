"""``stability analyze``: load checkpoints (or bare state_dicts), rebuild their data, analyze, report."""

from __future__ import annotations

from pathlib import Path

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .analysis import AnalysisOptions, analyze_model, steps_per_analysis
from .curvature_report import CurvatureOptions, analyze_curvature
from .checkpoint import (
    Checkpoint,
    build_model_from_checkpoint,
    checkpoint_from_dict,
    is_state_dict,
    read_checkpoint_file,
)
from .data import load_data
from .errors import BadInputError
from .report import Report, comparison_table, write_json
from .specs import DataSpec, ModelSpec


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
        from .figures import analysis_figures, curvature_figures

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
