"""``stability demo``: a toy model's closed forms next to gradient descent."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from stability.checks import check_count
from stability.cli.app import app, err_console, out_console, user_errors
from stability.config import MAX_SEED
from stability.files import check_output_path


@app.command()
def demo(
    name: Annotated[Optional[str], typer.Argument(help="Toy model to run (see --list).")] = None,
    out: Annotated[str, typer.Option(help="Folder for the figures (PNG).")] = "runs/demo",
    json_path: Annotated[Optional[str], typer.Option("--json", help="Write derived and measured quantities as JSON.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of sampled starting points and data.")] = 0,
    list_: Annotated[bool, typer.Option("--list", help="List the toy models, one line each.")] = False,
) -> None:
    """Run gradient descent on a toy model with closed forms, and draw what the theory predicts."""
    from stability.toy.demos import DEMOS, run_demo

    if list_ or name is None:
        for info in DEMOS.values():
            out_console.print(f"[bold]{info.name}[/]  {info.description}", highlight=False)
        if name is None and not list_:
            err_console.print("pass a name, e.g. `stability demo tanh-two-point`")
            raise typer.Exit(code=2)
        return
    with user_errors():
        check_count("--seed", seed, 0, most=MAX_SEED)
        out = check_output_path(out, "--out", folder=True)
        if json_path is not None:
            json_path = check_output_path(json_path, "--json")
        result = run_demo(name, out / name, seed=seed)
    for fig in result.get("figures", []):
        out_console.print(f"figure: {out / name / fig}")
    from stability.serialize import dumps, write_json

    if json_path is not None:
        write_json(json_path, result)
        out_console.print(f"JSON: {json_path}")
    else:
        out_console.print_json(dumps(_summary(result)))


def _summary(result: dict) -> dict:
    return {k: result[k] for k in ("demo", "derived", "measured", "agreement") if k in result}
