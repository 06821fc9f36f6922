"""Regenerate the figures of docs/theory.md: one folder per toy demo under docs/figures/.

Each demo writes its PNG(s) and, next to them, ``report.json`` — the derived and measured numbers the
figure shows (the same dict ``stability demo NAME --json PATH`` prints). Run from anywhere::

    python docs/make_figures.py                 # all demos, seed 0
    python docs/make_figures.py --only quartic  # one demo
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from stability.toy.demos import DEMOS, run_demo

FIGURES = Path(__file__).resolve().parent / "figures"

app = typer.Typer(add_completion=False, help=__doc__.splitlines()[0])


@app.command()
def main(
    only: Annotated[Optional[list[str]], typer.Option(help="Demo name(s) to regenerate (default: all).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the demos' random starts.")] = 0,
    out: Annotated[Path, typer.Option(help="Folder that receives one sub-folder per demo.")] = FIGURES,
) -> None:
    names = only or list(DEMOS)
    unknown = [n for n in names if n not in DEMOS]
    if unknown:
        raise typer.BadParameter(f"unknown demo(s) {', '.join(unknown)}; choose from {', '.join(DEMOS)}")
    failed = []
    for name in names:
        report = run_demo(name, out / name, seed=seed)
        tmp = out / name / ".report.json.tmp"
        tmp.write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
        tmp.replace(out / name / "report.json")
        ok = report["agreement"]["all"]
        typer.echo(f"{name:28s} {'agrees' if ok else 'DISAGREES'}  {', '.join(report['figures'])}")
        if not ok:
            failed.append(name)
    if failed:
        typer.echo(f"derivation and measurement disagree in: {', '.join(failed)}", err=True)
        raise typer.Exit(code=1)


if __name__ == "__main__":
    app()
