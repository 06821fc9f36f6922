"""Results files of an experiment script: ``results.json`` and ``results.md``, written atomically."""

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from stability.files import atomic_write
from stability.serialize import write_json
from stability.training.spec import TrainSpec

RESULTS_JSON = "results.json"


RESULTS_MD = "results.md"


def write_results(out: str | Path, results: Mapping[str, Any], markdown: str) -> tuple[Path, Path]:
    """Write ``results.json`` (non-finite floats as ``null``) and ``results.md``, each atomically."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / RESULTS_JSON, results)
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


