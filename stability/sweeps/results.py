"""Results files of an experiment script: ``results.json`` and ``results.md``, written atomically."""

import dataclasses
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from stability.files import atomic_write
from stability.serialize import json_safe
from stability.training.spec import TrainSpec

RESULTS_JSON = "results.json"


RESULTS_MD = "results.md"


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
    return "\n".join(lines) + "\n\n"


def protocol_section(title: str, settings: Mapping[str, Any], *, wall_seconds: float, device: str) -> str:
    """The head of a ``results.md``: what was run, where, and how long it took."""
    lines = [f"# {title}", "", "| setting | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in settings.items()]
    lines += [f"| device | {device} |", f"| wall time of this invocation | {wall_seconds:.0f} s |", ""]
    return "\n".join(lines) + "\n\n"


def describe_training(t: TrainSpec) -> str:
    """One line for a results table, e.g. ``sgd lr 0.05 momentum 0.9, batch 64, 150 epochs, cross-entropy``."""
    opt = f"{t.optimizer} lr {t.lr:g}" + (f" momentum {t.momentum:g}" if t.optimizer == "sgd" else "")
    decay = f", lr x{t.lr_decay:g}/epoch" if t.lr_decay != 1.0 else ""
    batch = "full batch" if t.batch_size == 0 else f"batch {t.batch_size}"
    return f"{opt}{decay}, {batch}, {t.epochs} epochs, {t.loss}"


def plain(obj: Any) -> Any:
    """A protocol dataclass (holding specs, tuples, numbers) as JSON-ready dicts and lists."""
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    return obj
