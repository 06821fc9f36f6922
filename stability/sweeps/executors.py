"""Where a sweep's runs are trained: one after another in this process, or as tasks on a Ray cluster.

An executor receives the runs a :class:`~stability.sweeps.runs.Sweep` still has to train (complete runs are
skipped before anything is submitted) and returns, per run, ``None`` (the run folder now holds the finished
run) or a :class:`RunFailure`. The run folders are the source of truth: the sweep reads every result back
from ``OUT/runs/NAME/``, whichever executor trained it, so the results files and figures do not depend on
the executor, and neither do the runs (seeds live in the specs; a run resumed from its checkpoint
reproduces the uninterrupted one).

- :class:`LocalExecutor` (the default): runs in order, in this process. A run that raises is reported
  and the sweep goes on; Ctrl-C stops the sweep (a rerun resumes the interrupted run).
- :class:`RayExecutor`: each run is a Ray task asking for ``cpus_per_run`` CPUs and ``gpus_per_run`` GPUs.
  A worker that dies (killed, out of memory, node lost) is retried up to ``max_retries`` times and the new
  attempt resumes from the run's last checkpoint; an error raised by the run itself is not retried (it
  would fail again) and is reported while the other runs go on. Needs ``pip install 'stability[ray]'`` and,
  on a cluster, an output folder that every node sees at the same path (see docs/scaling.md).
"""

from __future__ import annotations

import importlib.util
import math
import os
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from stability.checks import check_count, check_non_negative, check_optional_positive_int, check_positive
from stability.errors import BadInputError, StabilityError
from stability.sweeps.progress import SweepProgress, SweepStatus

RAY_HINT = "pip install 'stability[ray]'"


@dataclass(frozen=True)
class RunFailure:
    """A run that did not finish: its name, the error in one line, whether it is the user's to fix (bad
    input: it fails the same way on every attempt), and the traceback where one helps."""

    name: str
    error: str
    bad_input: bool
    detail: str = ""

    @classmethod
    def of(cls, name: str, exc: BaseException) -> RunFailure:
        bad = isinstance(exc, BadInputError)
        detail = "" if bad else "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        return cls(name, one_line(exc), bad, detail)


def one_line(exc: BaseException) -> str:
    """``Type: message`` for an unexpected error, the message alone for the toolkit's own (they say the fix)."""
    text = " ".join(str(exc).split())
    return text if isinstance(exc, StabilityError) else f"{type(exc).__name__}: {text}"


class SweepFailed(StabilityError):
    """Some runs of a sweep failed; the others finished and are in their folders (``results`` holds them).

    ``bad_input`` is true when every failure is input the user can fix (the command line exits 2, else 1).
    """

    def __init__(self, failures: Sequence[RunFailure], total: int, results: Mapping[str, Any]) -> None:
        self.failures, self.results = tuple(failures), dict(results)
        self.bad_input = all(f.bad_input for f in self.failures)
        listed = "; ".join(f"{f.name}: {f.error}" for f in self.failures)
        super().__init__(
            f"{len(self.failures)} of {total} runs failed ({listed}); the others are complete, and rerunning the "
            "same command retries only the failed runs"
        )


class Executor(Protocol):
    """What a :class:`~stability.sweeps.runs.Sweep` asks of an executor. ``execute`` receives the sweep
    (whose ``run(spec)`` trains one run here and whose ``worker_job()`` gives what a worker process runs)
    and its :class:`~stability.sweeps.runs.RunSpec` s; this module imports neither, it sits below them."""

    def default_device(self) -> str:
        """The device runs use when the command line names none."""

    def check_device(self, device: str) -> None:
        """Refuse (:class:`BadInputError`) a device the runs will not have."""

    def execute(
        self, sweep: Any, specs: Sequence[Any], status: SweepStatus, console: Any
    ) -> dict[str, RunFailure | None]:
        """Train ``specs`` into ``sweep``'s run folders, updating ``status``; ``{name: None | RunFailure}``."""


def report_failure(console: Any, failure: RunFailure) -> None:
    console.print(f"{failure.name}: failed: {failure.error}", style="red", markup=False, highlight=False)
    if failure.detail:
        console.print(failure.detail.rstrip(), style="dim", markup=False, highlight=False)


@dataclass(frozen=True)
class LocalExecutor:
    """Train the runs one after another in this process (each shows its own epoch bar)."""

    def default_device(self) -> str:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    def check_device(self, device: str) -> None:
        from stability.checks import check_device

        try:
            check_device(device)
        except BadInputError as exc:
            raise BadInputError(f"--{exc}") from None

    def execute(
        self, sweep: Any, specs: Sequence[Any], status: SweepStatus, console: Any
    ) -> dict[str, RunFailure | None]:
        outcomes: dict[str, RunFailure | None] = {}
        with SweepProgress(console, status, bar=False) as progress:
            for spec in specs:
                status.running = 1
                try:
                    sweep.run(spec, index=status.done + status.failed + 1, total=status.total)
                    outcomes[spec.name] = None
                    status.done += 1
                except Exception as exc:  # reported with its traceback; the sweep goes on
                    outcomes[spec.name] = failure = RunFailure.of(spec.name, exc)
                    status.failed += 1
                    report_failure(console, failure)
                status.running = 0
                progress.finished_one()
        return outcomes


def ray_installed() -> bool:
    try:
        return importlib.util.find_spec("ray") is not None
    except (ImportError, ValueError):  # e.g. sys.modules["ray"] = None
        return False


def concurrent_runs(resources: Mapping[str, float], cpus_per_run: float, gpus_per_run: float) -> int:
    """How many runs a cluster with ``resources`` (``{"CPU": 16, "GPU": 4}``) trains at once."""
    n = math.floor(resources.get("CPU", 0) / cpus_per_run + 1e-9)
    if gpus_per_run > 0:
        n = min(n, math.floor(resources.get("GPU", 0) / gpus_per_run + 1e-9))
    return max(n, 0)


def require_ray() -> None:
    """Refuse, in one line, to use the Ray executor where Ray is not installed."""
    if not ray_installed():
        raise BadInputError(f"--executor ray needs Ray, which is not installed; {RAY_HINT} (or use --executor local)")


@dataclass(frozen=True)
class RayExecutor:
    """Each run a Ray task with its resource request; the driver gathers the outcomes.

    Attributes:
        address: a running cluster (``auto``: the one ``ray start`` made on this node; ``HOST:PORT``);
            ``None`` starts a local cluster for this sweep and stops it afterwards.
        cpus_per_run: CPUs each run asks for, and its torch intra-op threads (the whole part); a local
            cluster of ``n`` CPUs trains ``n / cpus_per_run`` runs at once.
        gpus_per_run: GPUs each run asks for (fractions share a GPU); above 0 the runs train on ``cuda``.
        max_retries: new attempts after a worker died; each resumes from the run's last checkpoint.
        num_cpus: CPUs of the local cluster started without ``address`` (default: all of this machine's).
        poll_seconds: how often the driver redraws its progress bar while no run finishes.
    """

    address: str | None = None
    cpus_per_run: float = 1.0
    gpus_per_run: float = 0.0
    max_retries: int = 3
    num_cpus: int | None = None
    poll_seconds: float = 1.0

    def __post_init__(self) -> None:
        check_positive("--cpus-per-run", self.cpus_per_run)
        check_non_negative("--gpus-per-run", self.gpus_per_run)
        check_count("--max-retries", self.max_retries, 0)
        check_optional_positive_int("--ray-cpus", self.num_cpus)
        if self.address is not None and self.num_cpus is not None:
            raise BadInputError("--ray-cpus sizes a local cluster; with --address the cluster has its own size, drop one")
        require_ray()

    def default_device(self) -> str:
        return "cuda" if self.gpus_per_run > 0 else "cpu"

    def check_device(self, device: str) -> None:
        if device.startswith("cuda") and self.gpus_per_run == 0:
            raise BadInputError(f"--device {device} under --executor ray needs --gpus-per-run above 0 (e.g. 1)")

    def execute(
        self, sweep: Any, specs: Sequence[Any], status: SweepStatus, console: Any
    ) -> dict[str, RunFailure | None]:
        import ray

        if not specs:
            return {}
        connect = not ray.is_initialized()
        if connect:
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # nothing leaves the machine unasked
            try:
                ray.init(
                    address=self.address, num_cpus=self.num_cpus if self.address is None else None,
                    include_dashboard=False, log_to_driver=False,
                )  # fmt: skip
            except ConnectionError as exc:  # no cluster at --address
                raise BadInputError(
                    f"--address {self.address}: {one_line(exc)}; start the cluster (ray start --head) or drop --address"
                ) from None
        pending: list[Any] = []
        try:
            body, args = sweep.worker_job()
            task = ray.remote(body).options(
                num_cpus=self.cpus_per_run, num_gpus=self.gpus_per_run, max_retries=self.max_retries,
                retry_exceptions=False, name="stability-run",
            )  # fmt: skip
            threads = max(1, math.floor(self.cpus_per_run))
            names = {task.remote(args, spec, threads): spec.name for spec in specs}
            pending = list(names)
            slots = concurrent_runs(ray.cluster_resources(), self.cpus_per_run, self.gpus_per_run)
            outcomes: dict[str, RunFailure | None] = {}
            with SweepProgress(console, status, bar=True) as progress:
                status.running = min(len(pending), slots)
                progress.refresh()
                while pending:
                    ready, pending = ray.wait(pending, num_returns=1, timeout=self.poll_seconds)
                    for ref in ready:
                        outcomes[names[ref]] = failure = self._outcome(ray, ref, names[ref])
                        if failure is None:
                            status.done += 1
                        else:
                            status.failed += 1
                            report_failure(console, failure)
                    status.running = min(len(pending), slots)
                    progress.refresh()
            return {spec.name: outcomes[spec.name] for spec in specs}
        except BaseException:
            for ref in pending:  # Ctrl-C: stop the runs in flight; a rerun resumes them
                ray.cancel(ref, force=True)
            raise
        finally:
            if connect:
                ray.shutdown()

    def _outcome(self, ray: Any, ref: Any, name: str) -> RunFailure | None:
        try:
            ray.get(ref)
        except ray.exceptions.RayTaskError as exc:  # the run raised: it would raise again, not retried
            cause = exc.cause if isinstance(exc.cause, BaseException) else exc
            return RunFailure(name, one_line(cause), isinstance(cause, BadInputError), "" if isinstance(cause, BadInputError) else str(exc))
        except ray.exceptions.RayError as exc:  # the worker or its node died, more often than max_retries
            attempts = self.max_retries + 1
            return RunFailure(
                name, f"its worker died ({type(exc).__name__}) on all {attempts} attempt(s); rerun the sweep to "
                "resume it from its last checkpoint", bad_input=False, detail=str(exc),
            )  # fmt: skip
        return None


def resolve_path(path: str | Path | None) -> str | None:
    """An absolute path (the workers' working folder is not the driver's)."""
    return None if path is None else str(Path(path).expanduser().resolve())
