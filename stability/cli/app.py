"""The ``stability`` command line: train, analyze, and the quickstart that shows both.

Exit codes: 0 success; 1 the analysis found a problem the user asked to fail on; 2 bad input (unreadable or
untrusted checkpoint, unknown architecture, missing dataset files, ...), with one line saying what and how
to fix it.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator

import typer
from rich.console import Console
from rich.table import Table

from stability.data.spec import CORRUPTIONS
from stability.errors import BadInputError, StabilityError

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


@app.command("list")
def list_things() -> None:
    """List the datasets, architectures and corruptions."""
    from stability.data.sources import DATASETS
    from stability.models.registry import describe_architectures

    table = Table(title="architectures", show_header=False)
    for name, text in describe_architectures().items():
        table.add_row(name, text)
    out_console.print(table)
    out_console.print(f"datasets: {', '.join(DATASETS)}")
    out_console.print(f"corruptions: {', '.join(CORRUPTIONS)}")


def main() -> None:
    app()
