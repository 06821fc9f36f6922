"""What every command line of the toolkit shares (``stability`` and the experiment scripts): click's usage
errors as one ``error:`` line with exit code 2."""

from __future__ import annotations

import sys
from typing import Any

import typer
import typer.core
from rich.console import Console

err_console = Console(stderr=True)

try:  # typer >= 0.20 carries its own copy of click
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover
    from click import exceptions as click_errors  # type: ignore[no-redef]

class _OneLineMain:
    """click's usage errors (an option's value that does not parse or is out of range, an unknown option)
    shown as one ``error:`` line and exit code 2, like the toolkit's own errors."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except click_errors.NoArgsIsHelpError as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click_errors.ClickException as exc:
            text = " ".join(exc.format_message().split())
            err_console.print(f"[bold red]error:[/] {text}", markup=True, highlight=False, soft_wrap=True)
            sys.exit(exc.exit_code)
        except (typer.Abort, KeyboardInterrupt):
            err_console.print("[bold red]error:[/] interrupted", markup=True, highlight=False)
            sys.exit(130)
        sys.exit(code if isinstance(code, int) else 0)


class OneLineGroup(_OneLineMain, typer.core.TyperGroup):
    """A command group whose usage errors are one line."""


class OneLineCommand(_OneLineMain, typer.core.TyperCommand):
    """A single command whose usage errors are one line."""
