"""What every experiment script shares: named runs, a resumable sweep, per-run tracking, atomic results.

An experiment is a list of :class:`RunSpec` (three specs and a name derived from the settings that vary).
:class:`Sweep` trains them one after another into ``OUT/runs/NAME/`` (the folder ``stability analyze``
reads), skipping runs whose checkpoint is final and resuming interrupted ones from their last checkpoint.
A run may carry a :class:`~stability.dynamics.StabilityTracker`; its records go to ``tracking.jsonl`` next
to ``metrics.jsonl`` and, like the metrics, are cut back to the checkpoint's epoch on resume.
:func:`write_results` writes ``results.json`` and ``results.md`` atomically.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from .checkpoint import atomic_write, load_checkpoint
from .data import DataBundle, load_data
from .dynamics import StabilityTracker
from .report import json_safe
from .specs import DataSpec, ModelSpec, TrainSpec
from .train import CHECKPOINT, METRICS, read_metrics, train

TRACKING = "tracking.jsonl"
RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"

TrackerFactory = Callable[[DataBundle], StabilityTracker]


def run_name(**settings: Any) -> str:
    """A folder name from the settings that tell a run apart, e.g. ``corruption=random-labels,lr=0.01``."""
    parts = []
    for key, value in settings.items():
        if isinstance(value, float):
            value = f"{value:g}"
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

    def series(self, key: str, *, source: str = "history") -> tuple[list[float], list[float]]:
        """``(epochs, values)`` of ``key`` over the run, skipping rows without it."""
        rows = self.history if source == "history" else self.tracking
        pairs = [(r["epoch"], r[key]) for r in rows if r.get(key) is not None]
        return [p[0] for p in pairs], [p[1] for p in pairs]


class Sweep:
    """Train a list of runs under ``out/runs``; completed runs are read back, not retrained.

    Data bundles are loaded once per distinct :class:`DataSpec` (the last one is kept) and moved to
    ``device``; on CIFAR this is what makes a sweep over training settings cheap.
    """

    def __init__(
        self, out: str | Path, *, device: str | torch.device = "cpu", data_root: str | Path | None = None,
        download: bool = False, console: Console | None = None, progress: bool = True,
    ) -> None:  # fmt: skip
        self.out = Path(out)
        self.device = torch.device(device)
        self.data_root, self.download = data_root, download
        self.console = console or Console(stderr=True)
        self.progress = progress
        self._data: tuple[dict[str, Any], DataBundle] | None = None

    def run_dir(self, spec: RunSpec) -> Path:
        return self.out / "runs" / spec.name

    def run_all(self, specs: Sequence[RunSpec]) -> dict[str, RunResult]:
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise ValueError(f"run names repeat: {sorted(n for n in set(names) if names.count(n) > 1)}")
        return {s.name: self.run(s, index=i + 1, total=len(specs)) for i, s in enumerate(specs)}

    def run(self, spec: RunSpec, *, index: int = 1, total: int = 1) -> RunResult:
        out = self.run_dir(spec)
        if is_complete(out, spec):
            self.console.print(f"[dim]{index}/{total} {spec.name}: complete, skipped[/]")
            return RunResult(spec, out, read_metrics(out / METRICS), _read_tracking(out, None), skipped=True)
        self.console.print(f"[bold]{index}/{total} {spec.name}[/]")
        data = self._bundle(spec.data)
        resuming = (out / CHECKPOINT).exists()
        epoch = load_checkpoint(out / CHECKPOINT).epoch if resuming else 0
        on_epoch = None
        if spec.track is not None:
            on_epoch = _tracking_callback(spec, data, out, keep_upto=epoch if resuming else -1)
        train(
            spec.model, spec.data, spec.training, out, device=self.device, resume=resuming, data=data,
            progress=self.progress, on_epoch=on_epoch,
        )  # fmt: skip
        return RunResult(spec, out, read_metrics(out / METRICS), _read_tracking(out, None), skipped=False)

    def _bundle(self, spec: DataSpec) -> DataBundle:
        if self._data is None or self._data[0] != spec.identity:
            bundle = load_data(spec, data_root=self.data_root, download=self.download, device=self.device)
            self._data = (spec.identity, bundle)
        return self._data[1]


def is_complete(out: Path, spec: RunSpec) -> bool:
    """Whether ``out`` holds the final checkpoint of exactly this run (same specs, all epochs done)."""
    path = out / CHECKPOINT
    if not path.exists():
        return False
    ckpt = load_checkpoint(path)
    same = (
        ckpt.model.to_dict() == spec.model.to_dict()
        and ckpt.data.identity == spec.data.identity
        and ckpt.training is not None
        and ckpt.training.to_dict() == spec.training.to_dict()
    )
    done = same and ckpt.resume is None and ckpt.epoch == spec.training.epochs
    if done and spec.track is not None and not (out / TRACKING).exists():
        return False
    return done


def _tracking_callback(
    spec: RunSpec, data: DataBundle, out: Path, keep_upto: int
) -> Callable[[dict[str, float], torch.nn.Module], None]:
    """Measure with the run's tracker every ``track_every`` epochs and at the last, appending to tracking.jsonl."""
    tracker = spec.track(data)  # type: ignore[misc]
    path = out / TRACKING
    kept = _read_tracking(out, keep_upto) if keep_upto >= 0 else []
    text = "".join(json.dumps(r) + "\n" for r in kept)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda fh: fh.write(text.encode()))
    last = spec.training.epochs

    def on_epoch(row: dict[str, float], model: torch.nn.Module) -> None:
        epoch = int(row["epoch"])
        if epoch % spec.track_every and epoch != last:
            return
        record = tracker.measure(int(row["step"]), model)
        record = {"epoch": epoch, **{k: _plain(v) for k, v in record.items()}}
        with open(path, "a") as fh:
            fh.write(json.dumps(record) + "\n")

    return on_epoch


def _read_tracking(out: Path, upto: int | None) -> list[dict[str, Any]]:
    path = out / TRACKING
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            break  # a line cut short by an interruption
        if upto is None or row["epoch"] <= upto:
            rows.append(row)
    return rows


def _plain(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


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


def write_results(out: str | Path, results: Mapping[str, Any], markdown: str) -> tuple[Path, Path]:
    """Write ``results.json`` (non-finite floats as ``null``) and ``results.md``, each atomically."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(json_safe(results), indent=2) + "\n"
    atomic_write(out / RESULTS_JSON, lambda fh: fh.write(text.encode()))
    atomic_write(out / RESULTS_MD, lambda fh: fh.write(markdown.encode()))
    return out / RESULTS_JSON, out / RESULTS_MD


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub markdown table; floats shown with 3 decimals, ``None`` as an em dash."""

    def cell(v: Any) -> str:
        if v is None:
            return "—"
        if isinstance(v, float):
            return f"{v:.3f}" if math.isfinite(v) else "—"
        return str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"
