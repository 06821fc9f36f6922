"""``stability quickstart``: true vs random labels on digits, trained, then analyzed side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stability.cli.app import app, out_console, user_errors


@app.command()
def quickstart(
    out: Annotated[Path, typer.Option(help="Folder for the two runs, analysis.json and figures/.")] = Path("runs/quickstart"),
    epochs: Annotated[int, typer.Option(help="Epochs for each run.")] = 150,
    device: Annotated[str, typer.Option(help="cpu, cuda, ...")] = "cpu",
) -> None:
    """Train the same MLP on digits with true and with random labels, and compare them side by side."""
    from stability.analysis.options import AnalysisOptions, BareStateDict, CurvatureOptions
    from stability.cli.analyze import run_analyze
    from stability.sweeps.quickstart import run_quickstart

    with user_errors():
        results = run_quickstart(out, epochs=epochs, device=device, console=out_console)
        run_analyze(
            [r.checkpoint_path for r in results.values()], options=AnalysisOptions(max_samples=None),
            curvature=CurvatureOptions(), bare=BareStateDict(), device=device, json_path=out / "analysis.json",
            plots=out / "figures",
        )  # fmt: skip
