"""The ``stability`` command line: thin Typer commands over the library.

Exit codes: 0 success; 1 the analysis found a problem the user asked to fail on; 2 bad input, with one
line saying what and how to fix it. Each command imports the heavy modules it needs when it runs, and the options
of every command come from torch-free dataclasses, so ``stability --help`` answers without importing torch. The Typer app is :data:`stability.cli.app.app`.
"""

from stability.cli import analyze, correlate, demo, quickstart, train  # noqa: F401  (each registers its command)
from stability.cli.app import main

__all__ = ["main"]
