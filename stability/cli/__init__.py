"""The ``stability`` command line: thin Typer commands over the library.

Exit codes: 0 success; 1 the analysis found a problem the user asked to fail on; 2 bad input, with one
line saying what and how to fix it. Each command imports the heavy modules it needs when it runs, and
``analyze`` (whose options come from the analysis option dataclasses) loads on first use, so
``stability --help`` answers without importing torch. The Typer app is :data:`stability.cli.app.app`.
"""

from stability.cli import demo, quickstart, train  # noqa: F401  (each registers its command)
from stability.cli.app import main

__all__ = ["main"]
