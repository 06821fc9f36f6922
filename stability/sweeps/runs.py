"""What every experiment script shares: named runs, a resumable sweep, per-run tracking, atomic results.

An experiment is a list of :class:`RunSpec` (three specs and a name derived from the settings that vary).
:class:`Sweep` trains them into ``OUT/runs/NAME/`` (the folder ``stability analyze`` reads), skipping runs
whose checkpoint is final before anything is submitted and resuming interrupted ones from their last
checkpoint; its executor (:mod:`stability.sweeps.executors`: in this process, or on a Ray cluster) decides
where the runs train, and every result is read back from the run folders.
A run may carry a :class:`~stability.dynamics.StabilityTracker`; its records go to ``tracking.jsonl`` next
to ``metrics.jsonl`` and, like the metrics, are cut back to the checkpoint's epoch on resume.
What a script does around a sweep (its command line, ``results.json``/``results.md``) is in
:mod:`stability.sweeps.command`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from stability.data.bundle import DataBundle, load_data
from stability.data.spec import DataSpec
from stability.dynamics.tracking import StabilityTracker
from stability.errors import BadInputError
from stability.models.registry import accepted_kwargs
from stability.models.spec import ModelSpec
from stability.serialize import to_json
from stability.sweeps.executors import Executor, LocalExecutor, RunFailure, SweepFailed, resolve_path
from stability.sweeps.progress import SweepStatus
from stability.training.checkpoint import Checkpoint, load_checkpoint
from stability.training.logs import append_jsonl, cut_jsonl, read_jsonl, read_metrics
from stability.training.spec import TrainSpec
from stability.training.train import CHECKPOINT, METRICS, checkpoint_settings, run_settings, train

TRACKING = "tracking.jsonl"


TrackerFactory = Callable[[DataBundle], StabilityTracker]


def run_name(**settings: Any) -> str:
    """A folder name from the settings that tell a run apart, e.g. ``corruption=random-labels,lr=0.01``."""
    parts = []
    for key, value in settings.items():
        if isinstance(value, float):
            # Shortest form that still tells the settings apart (``:g`` alone keeps 6 digits).
            value = f"{value:g}" if float(f"{value:g}") == value else repr(value)
        parts.append(f"{key}={value}")
    name = ",".join(parts)
    if not re.fullmatch(r"[A-Za-z0-9_.,=+-]+", name):
        raise ValueError(f"run name {name!r} has characters unsafe in a folder name")
    return name


@dataclass(frozen=True)
class RunSpec:
    """One training run of an experiment.

    Attributes:
        name: the run's folder under ``OUT/runs/`` (see :func:`run_name`).
        model, data, training: the three specs.
        labels: what the run stands for in tables and figures (e.g. ``{"test": "gaussian"}``).
        track: builds the run's tracker from its data; called once per (re)start of the run.
        track_every: measure with the tracker every this many epochs (and at epoch 0 and the last).
    """

    name: str
    model: ModelSpec
    data: DataSpec
    training: TrainSpec
    labels: Mapping[str, Any] = field(default_factory=dict)
    track: TrackerFactory | None = None
    track_every: int = 1


@dataclass(frozen=True)
class RunResult:
    """A finished run as the experiment sees it: its metrics per epoch and its tracking records."""

    spec: RunSpec
    out_dir: Path
    history: list[dict[str, Any]]
    tracking: list[dict[str, Any]]
    skipped: bool

    @property
    def final(self) -> dict[str, Any]:
        return self.history[-1]

    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / CHECKPOINT

    @property
    def num_classes(self) -> int:
        return load_checkpoint(self.checkpoint_path).num_classes

    def series(self, key: str, *, source: str = "history", x: str = "epoch") -> tuple[list[float], list[float]]:
        """``(x, values)`` of ``key`` over the run (``x``: ``epoch`` or ``step``), skipping rows without it."""
        if source not in ("history", "tracking"):
            raise ValueError(f"source must be 'history' or 'tracking', got {source!r}")
        rows = self.history if source == "history" else self.tracking
        pairs = [(r[x], r[key]) for r in rows if r.get(key) is not None]
        return [p[0] for p in pairs], [p[1] for p in pairs]


class Sweep:
    """Train a list of runs under ``out/runs``; completed runs are read back, not retrained.

    Data bundles are loaded once per distinct :class:`DataSpec` (the last one is kept) and moved to
    ``device``; on CIFAR this is what makes a sweep over training settings cheap. ``executor`` trains the
    runs :meth:`run_all` has left after skipping the complete ones (default: :class:`LocalExecutor`).
    """

    def __init__(
        self, out: str | Path, *, device: str | torch.device = "cpu", data_root: str | Path | None = None,
        download: bool = False, console: Console | None = None, progress: bool = True,
        executor: Executor | None = None,
    ) -> None:  # fmt: skip
        self.out = Path(out)
        self.device = torch.device(device)
        self.data_root, self.download = data_root, download
        self.console = console or Console(stderr=True)
        self.progress = progress
        self.executor: Executor = executor or LocalExecutor()
        self._data: tuple[dict[str, Any], DataBundle] | None = None

    def worker_job(self) -> tuple[Callable[..., None], dict[str, Any]]:
        """What a worker process runs for one run, ``body(args, spec, threads)``, and the ``args`` that rebuild
        this sweep there (paths made absolute: a worker's working folder is not the driver's)."""
        args = {"out": resolve_path(self.out), "device": str(self.device), "data_root": resolve_path(self.data_root),
                "download": self.download}  # fmt: skip
        return train_in_worker, args

    def run_groups(self, groups: Mapping[str, Sequence[RunSpec]]) -> tuple[dict[str, list[RunResult]], dict[str, RunResult]]:
        """Train the runs of every group; a run in several groups (same name) is trained once and returned in
        each with that group's own spec (its labels). Returns the groups' results and the unique runs."""
        unique: dict[str, RunSpec] = {}
        for spec in (s for specs in groups.values() for s in specs):
            first = unique.setdefault(spec.name, spec)
            if _settings(first) != _settings(spec):
                raise ValueError(f"two different runs are both named {spec.name!r}")
        for arch in sorted({s.model.arch for s in unique.values()}):
            accepted_kwargs(arch)  # an unknown architecture is refused in one line before any run starts
        done = self.run_all(list(unique.values()))
        results = {k: [dataclasses.replace(done[s.name], spec=s) for s in specs] for k, specs in groups.items()}
        return results, done

    def run_dir(self, spec: RunSpec) -> Path:
        return self.out / "runs" / spec.name

    def run_all(self, specs: Sequence[RunSpec]) -> dict[str, RunResult]:
        """Train ``specs`` (complete runs skipped first) with the executor; results in the order of ``specs``.

        Raises:
            SweepFailed: after every other run finished, listing the runs that failed and why.
        """
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise ValueError(f"run names repeat: {sorted(n for n in set(names) if names.count(n) > 1)}")
        status = SweepStatus(total=len(specs))
        pending = []
        for i, spec in enumerate(specs):
            if is_complete(self.run_dir(spec), spec):
                self.console.print(f"[dim]{i + 1}/{len(specs)} {spec.name}: complete, skipped[/]")
                status.skipped += 1
                status.done += 1
            else:
                pending.append(spec)
        outcomes = self.executor.execute(self, pending, status, self.console) if pending else {}
        failures = [f for f in outcomes.values() if isinstance(f, RunFailure)]
        results = {
            s.name: _result(s, self.run_dir(s), skipped=s.name not in outcomes) for s in specs if outcomes.get(s.name) is None
        }  # fmt: skip
        if failures:
            raise SweepFailed(failures, len(specs), results)
        return results

    def run(self, spec: RunSpec, *, index: int = 1, total: int = 1) -> RunResult:
        out = self.run_dir(spec)
        ckpt = load_checkpoint(out / CHECKPOINT) if (out / CHECKPOINT).exists() else None
        # Refuse before anything in the folder is touched.
        if ckpt is not None and checkpoint_settings(ckpt) != _settings(spec):
            raise BadInputError(f"{out} holds a run with different settings; remove it or choose another --out to start anew")
        if ckpt is not None and _finished(ckpt, spec):
            if spec.track is not None and not (out / TRACKING).exists():
                raise BadInputError(
                    f"{out} holds a finished run whose {TRACKING} is missing and cannot be rebuilt; remove the folder to retrain it"
                )
            self.console.print(f"[dim]{index}/{total} {spec.name}: complete, skipped[/]")
            return _result(spec, out, skipped=True)
        self.console.print(f"[bold]{index}/{total} {spec.name}[/]")
        data = self._bundle(spec.data)
        on_epoch = None
        if spec.track is not None:
            on_epoch = _tracking_callback(spec, data, out)
        trained = train(
            spec.model, spec.data, spec.training, out, device=self.device, resume=ckpt is not None, data=data,
            progress=self.progress, on_epoch=on_epoch,
        )  # fmt: skip
        for note in trained.notes:  # e.g. the folder's previous writer was killed; the run resumed
            self.console.print(f"[yellow]{note}[/]")
        return _result(spec, out, skipped=False)

    def _bundle(self, spec: DataSpec) -> DataBundle:
        if self._data is None or self._data[0] != spec.identity:
            bundle = load_data(spec, data_root=self.data_root, download=self.download, device=self.device)
            self._data = (spec.identity, bundle)
        return self._data[1]


# One Sweep per worker process and settings, so that consecutive runs on the same data load it once.
_WORKER_SWEEPS: dict[tuple, Sweep] = {}


def train_in_worker(args: Mapping[str, Any], spec: RunSpec, threads: int = 1) -> None:
    """The body of a Ray task: train ``spec`` into its folder (resuming it if a checkpoint is there) on
    ``threads`` intra-op threads (set here: a reused worker process keeps the count its torch started with)."""
    torch.set_num_threads(threads)
    key = tuple(sorted((k, str(v)) for k, v in args.items()))
    sweep = _WORKER_SWEEPS.get(key)
    if sweep is None:
        _WORKER_SWEEPS.clear()
        sweep = _WORKER_SWEEPS[key] = Sweep(**args, progress=False, console=Console(stderr=True))
    sweep.run(spec)


def is_complete(out: Path, spec: RunSpec) -> bool:
    """Whether ``out`` holds the final checkpoint of exactly this run (same specs, all epochs done, and its
    tracking records when the run is tracked)."""
    path = out / CHECKPOINT
    if not path.exists():
        return False
    ckpt = load_checkpoint(path)
    done = checkpoint_settings(ckpt) == _settings(spec) and _finished(ckpt, spec)
    return done and (spec.track is None or (out / TRACKING).exists())


def _settings(spec: RunSpec) -> dict[str, Any]:
    return run_settings(spec.model, spec.data, spec.training)


def _finished(ckpt: Checkpoint, spec: RunSpec) -> bool:
    """A checkpoint written after all of the run's epochs."""
    return ckpt.epoch == spec.training.epochs


def _result(spec: RunSpec, out: Path, *, skipped: bool) -> RunResult:
    return RunResult(spec, out, read_metrics(out / METRICS), read_jsonl(out / TRACKING), skipped=skipped)


def _tracking_callback(spec: RunSpec, data: DataBundle, out: Path) -> Callable[[dict[str, float], torch.nn.Module], None]:
    """Measure with the run's tracker every ``track_every`` epochs and at the last, appending to tracking.jsonl.

    The file is cut back on the first call, inside :func:`train` and so under the run folder's lock: to the
    records before that epoch (a fresh run's first call is epoch 0, which empties it; a run resumed from the
    checkpoint of epoch ``e`` first calls at ``e + 1``), so another process's run is never touched."""
    tracker = spec.track(data)  # type: ignore[misc]
    path = out / TRACKING
    last = spec.training.epochs
    first = [True]

    def on_epoch(row: dict[str, float], model: torch.nn.Module) -> None:
        epoch = int(row["epoch"])
        if first[0]:
            cut_jsonl(path, epoch - 1)
            first[0] = False
        if epoch % spec.track_every and epoch != last:
            return
        record = tracker.measure(int(row["step"]), model)
        tensors = {k: v.tolist() for k, v in record.items() if isinstance(v, torch.Tensor)}
        append_jsonl(path, to_json({"epoch": epoch, **record, **tensors}))

    return on_epoch


def first_epoch(
    history: Iterable[Mapping[str, Any]], key: str, level: float, *, below: bool = False, at: str = "epoch"
) -> int | None:
    """The ``at`` (``epoch`` or ``step``) of the first row whose ``key`` reaches ``level`` (falls under it with
    ``below``); ``None`` if no row does."""
    for row in history:
        value = row.get(key)
        if value is not None and (value < level if below else value >= level):
            return int(row[at])
    return None
