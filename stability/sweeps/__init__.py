"""Experiment sweeps: named, resumable runs, the results files, and the command line every script shares.

- :mod:`.runs` — :class:`RunSpec` and :class:`Sweep`: runs named by their settings, skipped when finished,
  resumed when interrupted.
- :mod:`.results` — ``results.json`` and ``results.md``.
- :mod:`.command` — :class:`Experiment` and :func:`experiment_app`, the scripts' shared Typer command.
- :mod:`.quickstart` — the two-run comparison that ``stability quickstart`` trains.
"""

from stability.sweeps.runs import RunResult, RunSpec, Sweep, first_epoch, run_name

__all__ = ["RunResult", "RunSpec", "Sweep", "first_epoch", "run_name"]
