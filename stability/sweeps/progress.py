"""One progress display over a sweep's runs: done, running, failed, and the time left.

The estimate of the time left is the sweep's own throughput so far, ``elapsed / finished * remaining``, where
``finished`` counts the runs trained (or failed) by this invocation; runs skipped as complete do not count,
so a rerun of a half-finished sweep does not promise the impossible. With several runs in flight the
throughput already includes the parallelism.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from rich.console import Console


def eta_seconds(elapsed: float, finished: int, remaining: int) -> float | None:
    """``elapsed / finished * remaining`` seconds; ``0`` when nothing remains, ``None`` before a run finished."""
    if remaining <= 0:
        return 0.0
    if finished <= 0:
        return None
    return elapsed / finished * remaining


def format_seconds(seconds: float | None) -> str:
    """``1:02:03``, ``2:05`` or ``—`` (not known yet)."""
    if seconds is None:
        return "—"
    s = int(round(seconds))
    h, m = divmod(s // 60, 60)
    return f"{h}:{m:02d}:{s % 60:02d}" if h else f"{m}:{s % 60:02d}"


@dataclass
class SweepStatus:
    """Counts over the runs of one sweep invocation.

    Attributes:
        total: every run of the sweep; ``skipped``: complete before it started (counted as done);
        done: finished (including the skipped); failed: gave up on; running: in flight now.
    """

    total: int
    skipped: int = 0
    done: int = 0
    failed: int = 0
    running: int = 0
    started: float = field(default_factory=time.perf_counter)

    @property
    def remaining(self) -> int:
        return self.total - self.done - self.failed

    def eta(self, now: float | None = None) -> float | None:
        elapsed = (time.perf_counter() if now is None else now) - self.started
        return eta_seconds(elapsed, self.done - self.skipped + self.failed, self.remaining)

    def line(self) -> str:
        """e.g. ``runs 3/6 done (1 skipped) · 2 running · 0 failed · ETA 1:20``."""
        skipped = f" ({self.skipped} skipped)" if self.skipped else ""
        return (
            f"runs {self.done}/{self.total} done{skipped} · {self.running} running · {self.failed} failed"
            f" · ETA {format_seconds(self.eta())}"
        )


class SweepProgress:
    """Shows a :class:`SweepStatus`: a live bar (``bar=True``; the Ray driver, whose workers print nothing),
    or one line each time a run finishes (the local executor, whose runs show their own epoch bar)."""

    def __init__(self, console: Console, status: SweepStatus, *, bar: bool) -> None:
        self.console, self.status, self.bar = console, status, bar
        self._progress = None

    def __enter__(self) -> SweepProgress:
        if self.bar:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            self._progress = Progress(
                TextColumn("[bold]runs"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[line]}"),
                console=self.console, transient=False,
            )  # fmt: skip
            self._progress.__enter__()
            self._task = self._progress.add_task("runs", total=self.status.total, line="")
            self.refresh()
        return self

    def refresh(self) -> None:
        """Redraw the bar (call it as often as you like; it is cheap)."""
        if self._progress is not None:
            s = self.status
            self._progress.update(self._task, completed=s.done + s.failed, line=s.line().split(" · ", 1)[1])

    def finished_one(self) -> None:
        """A run finished or failed: redraw the bar, or print the status line."""
        if self._progress is not None:
            self.refresh()
        else:
            self.console.print(f"[dim]{self.status.line()}[/]")

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self.refresh()
            self._progress.__exit__(*exc)
