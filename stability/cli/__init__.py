"""The ``stability`` command line: thin Typer commands over the library.

Exit codes: 0 success; 1 the analysis found a problem the user asked to fail on; 2 bad input, with one
line saying what and how to fix it. Each command imports the heavy modules it needs when it runs, so
``stability --help`` answers at once.
"""

from stability.cli import analyze, demo, quickstart, train  # noqa: F401  (each registers its command)
from stability.cli.app import app, main

__all__ = ["app", "main"]
