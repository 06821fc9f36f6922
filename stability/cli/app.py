"""The ``stability`` command line: train, analyze, and the quickstart that shows both.

Exit codes: 0 success; 1 the analysis found a problem the user asked to fail on; 2 bad input (unreadable or
untrusted checkpoint, unknown architecture, missing dataset files, ...), with one line saying what and how
to fix it.

Start-up stays light: this module and the command modules import typer, rich's console and the spec
dataclasses only; torch, the measures, sympy and matplotlib load inside the command that needs them.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping

import typer
import typer.core
import typer.main
from rich.console import Console

from stability.commands import OneLineGroup
from stability.errors import BadInputError, StabilityError

app = typer.Typer(
    cls=OneLineGroup,
    name="stability",
    help="Measure why trained networks generalize: input and parameter stability of real checkpoints.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


out_console = Console()


err_console = Console(stderr=True)


def translate(message: str, flags: Mapping[str, str]) -> str:
    """``message`` with each library parameter named as its flag.

    A name with an underscore is rewritten wherever it stands as a word; a plain word (``lr``, ``loss``)
    only where the message speaks of it as a parameter: before ``must``, a quoted value, a
    parenthesis or a comparison.
    """
    for name in sorted(flags, key=len, reverse=True):
        tail = r"(?![\w-])" if "_" in name else r"(?=\s+must\b|\s+'|\s+\(|\s*[=<>])"
        message = re.sub(rf"(?<![\w\-./]){re.escape(name)}{tail}", flags[name], message)
    return message


@contextlib.contextmanager
def translated(flags: Mapping[str, str]) -> Iterator[None]:
    """A :class:`BadInputError` raised inside is raised again with its parameter names as flags."""
    try:
        yield
    except BadInputError as exc:
        raise type(exc)(translate(str(exc), flags)) from None


@contextlib.contextmanager
def user_errors(flags: Mapping[str, str] | None = None) -> Iterator[None]:
    """Turn the toolkit's input errors into one line on stderr and exit code 2.

    ``flags`` maps library parameter names to the command's flags, so the line names what the user typed.
    """
    try:
        yield
    except (BadInputError, StabilityError) as exc:
        text = translate(str(exc), flags or {})
        err_console.print(f"[bold red]error:[/] {text}", markup=True, highlight=False, soft_wrap=True)
        raise typer.Exit(code=2) from None


@app.command("list")
def list_things() -> None:
    """List the datasets, architectures and corruptions."""
    from rich.table import Table

    from stability.data.sources import DATASETS
    from stability.data.spec import CORRUPTIONS
    from stability.models.registry import describe_architectures

    table = Table(title="architectures", show_header=False)
    for name, text in describe_architectures().items():
        table.add_row(name, text)
    out_console.print(table)
    out_console.print(f"datasets: {', '.join(DATASETS)}")
    out_console.print(f"corruptions: {', '.join(CORRUPTIONS)}")


def main() -> None:
    app()
