"""``stability quickstart``: true vs random labels on digits, side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stability.cli.app import app, out_console, user_errors


@app.command()
def quickstart(
    out: Annotated[Path, typer.Option(help="Folder for the two runs.")] = Path("runs/quickstart"),
    epochs: Annotated[int, typer.Option(help="Epochs for each run.")] = 150,
    device: Annotated[str, typer.Option(help="cpu, cuda, ...")] = "cpu",
) -> None:
    """Train the same MLP on digits with true and with random labels, and compare them side by side."""
    from stability.sweeps.quickstart import run_quickstart

    with user_errors():
        run_quickstart(out, epochs=epochs, device=device, console=out_console)
