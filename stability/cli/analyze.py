"""``stability analyze``: checkpoints, bare state_dicts or your own model, analyzed on their data, reported.

The options are the fields of :class:`~stability.analysis.splits.AnalysisOptions`,
:class:`~stability.analysis.curvature.CurvatureOptions` and :class:`~stability.analysis.run.BareStateDict`;
the work is :func:`stability.analysis.run.analyze_checkpoint`, one file at a time. The console, the progress
bar, the table, the JSON file and the figures live here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from stability.analysis.options import AnalysisOptions, BareStateDict, CurvatureOptions
from stability.cli.app import app, err_console, out_console, translate, user_errors
from stability.cli.options import Options, config_command
from stability.data.spec import PREPROCESSING
from stability.files import check_checkpoint_path, check_output_path

ANALYSIS = Options(AnalysisOptions, zero_is_none=("max_samples", "chunk_size"), help={
    "max_samples": "Samples analyzed per split (a seeded subset).",
    "chunk_size": "Samples per vmap chunk and per curvature chunk (bounds memory).",
})  # fmt: skip


CURVATURE = Options(CurvatureOptions, rename={"subset": "curvature_samples"}, zero_is_none=("chunk_size",))


BARE = Options(BareStateDict, choices={"preprocess": PREPROCESSING}, help={
    "preprocess": "For a bare state_dict: the preprocessing the model was trained with; default standardize "
                  "(as stability train). A model trained on raw pixels in [0, 1] needs none.",
})  # fmt: skip


def run_analyze(
    paths: list[Path], *, options: AnalysisOptions, curvature: CurvatureOptions | None, bare: BareStateDict,
    lr: float | None = None, batch_size: int | None = None, device: str = "cpu", data_root: Path | None = None,
    download: bool = False, unsafe_pickle: bool = False, json_path: Path | None = None, plots: Path | None = None,
    progress: bool = True, console: Console = out_console,
) -> list[str]:
    """Analyze every file, print one comparison table, write JSON and figures.

    Every input is checked before any work: the files, the output paths (``--json``, ``--plots``) and the
    device. A file whose analysis fails part-way (a numerical failure, data that cannot be read) is reported
    in one line naming the file and the section; the others are still reported and written.

    Returns the estimates that did not converge (for ``--strict``).

    Raises:
        AnalysisFailed: after writing what finished, when the analysis of some file failed.
    """
    for path in paths:  # a wrong path is refused before torch loads
        check_checkpoint_path(path)
    if json_path is not None:
        check_output_path(json_path, "--json")
    if plots is not None:
        check_output_path(plots, "--plots", folder=True)
    from stability.analysis.run import analyze_checkpoint, open_weights
    from stability.checks import check_count, check_device, check_positive

    check_device(device)
    if lr is not None:
        check_positive("lr", lr)
    if batch_size is not None:
        check_count("batch_size", batch_size, 0, "0 = full batch")

    # Read every file first, so a bad one fails before minutes of work on the others.
    weights = [open_weights(p, bare=bare, unsafe_pickle=unsafe_pickle, data_root=data_root, download=download)
               for p in paths]  # fmt: skip
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from stability.analysis.report import comparison_table, write_json
    from stability.analysis.splits import steps_per_analysis

    for w in weights:
        if w.training is None:
            err_console.print(f"note: {w.source} is analyzed on {w.data.dataset} with --preprocess {w.data.preprocess}",
                              highlight=False, soft_wrap=True)  # fmt: skip
    labels = _labels(paths)
    reports, done, failures = [], [], []
    with Progress(TextColumn("[bold]analyze"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.description}"), console=err_console, disable=not progress,
                  transient=True) as bar:  # fmt: skip
        task = bar.add_task("", total=(steps_per_analysis() + (curvature is not None)) * len(weights))
        for label, w in zip(labels, weights):
            section = ["loading its data"]

            def advance(text: str, label: str = label, section: list = section) -> None:
                section[0] = text
                bar.update(task, advance=1, description=f"{label} {text}")

            try:
                reports.append(analyze_checkpoint(w, data_root=data_root, download=download, device=device, lr=lr,
                                                  batch_size=batch_size, options=options, curvature=curvature,
                                                  advance=advance))  # fmt: skip
                done.append(label)
            except Exception as exc:  # noqa: BLE001 - one file's failure must not lose the others' reports
                failures.append((label, section[0], exc))
    labels = done
    if not reports:
        raise AnalysisFailed(failures)
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
    if failures:
        raise AnalysisFailed(failures)
    return [f"{label} {item}" for label, r in zip(labels, reports)
            for item in r.analysis.unconverged + (r.curvature.unconverged if r.curvature else [])]  # fmt: skip


class AnalysisFailed(Exception):
    """The analysis of some files failed part-way: ``failures`` holds ``(label, section, exception)``."""

    def __init__(self, failures: list[tuple[str, str, BaseException]]):
        super().__init__(f"{len(failures)} file(s) failed")
        self.failures = failures

    def lines(self) -> list[str]:
        from stability.errors import BadInputError, first_line

        out = []
        for label, section, exc in self.failures:
            first = first_line(exc, 240)
            if isinstance(exc, BadInputError):
                out.append(f"{label}: {first}")
            else:
                out.append(f"{label}: the analysis failed while {section} ({type(exc).__name__}: {first}); "
                           "the other files' results were written — retry with --no-curvature or another --seed")
        return out

    @property
    def code(self) -> int:
        """2 where every failure was bad input, else 1."""
        from stability.errors import BadInputError

        return 2 if all(isinstance(e, BadInputError) for _, _, e in self.failures) else 1


def _labels(paths: list[Path]) -> list[str]:
    """Short distinct names: the file's parent folder for checkpoint.pt files, else the file name."""
    names = [p.parent.name if p.name == "checkpoint.pt" and p.parent.name else p.name for p in paths]
    return names if len(set(names)) == len(names) else [str(p) for p in paths]


@app.command(help="Measure accuracy, loss, input sensitivity and curvature of checkpoints or of your own model.")
@config_command(options=ANALYSIS, curvature_options=CURVATURE, bare=BARE)
def analyze(
    checkpoints: Annotated[list[Path], typer.Argument(help="Checkpoints written by `stability train`, or bare state_dicts with --model or --arch, and --dataset.")],
    json_path: Annotated[Optional[str], typer.Option("--json", help="Write the report as JSON (schema in docs/cli.md).")] = None,
    plots: Annotated[Optional[str], typer.Option(help="Write figures (PNG) into this folder.")] = None,
    curvature: Annotated[bool, typer.Option(help="Also report curvature, stability verdicts and bounds (on the training split).")] = True,
    lr: Annotated[Optional[float], typer.Option(help="Step size for the GD/SGD verdicts. Default: the checkpoint's.")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Batch size for the SGD verdict (0 = full batch). Default: the checkpoint's.")] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda, ...")] = "cpu",
    data_root: Annotated[Optional[Path], typer.Option(help="Where on-disk datasets live on this machine.")] = None,
    download: Annotated[bool, typer.Option(help="Fetch a missing on-disk dataset.")] = False,
    unsafe_pickle: Annotated[bool, typer.Option("--unsafe-pickle", help="Allow arbitrary pickles. RUNS CODE FROM THE FILE: only for files you made.")] = False,
    strict: Annotated[bool, typer.Option(help="Exit 1 if an iterative estimate did not converge.")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    *,
    options: AnalysisOptions,
    curvature_options: CurvatureOptions,
    bare: BareStateDict,
) -> None:
    try:
        with user_errors(analyze.flags):
            failed = run_analyze(
                checkpoints, options=options, curvature=curvature_options if curvature else None, bare=bare, lr=lr,
                batch_size=batch_size, device=device, data_root=data_root, download=download,
                unsafe_pickle=unsafe_pickle, progress=progress,
                json_path=None if json_path is None else check_output_path(json_path, "--json"),
                plots=None if plots is None else check_output_path(plots, "--plots", folder=True),
            )  # fmt: skip
    except AnalysisFailed as exc:
        for line in exc.lines():
            err_console.print(f"[bold red]error:[/] {translate(line, analyze.flags)}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=exc.code) from None
    if strict and failed:
        err_console.print(f"[bold red]not converged:[/] {'; '.join(failed)}")
        raise typer.Exit(code=1)
