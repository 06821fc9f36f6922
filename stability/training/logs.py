"""Per-epoch JSON-lines logs of a run folder (``metrics.jsonl``, ``tracking.jsonl``): read, append, cut back on resume."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from stability.files import atomic_write


def _clean(row: dict[str, float]) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}


def _write_history(path: Path, rows: list[dict[str, float]]) -> None:
    write_jsonl(path, [_clean(r) for r in rows])


def _append_history(path: Path, row: dict[str, float]) -> None:
    append_jsonl(path, _clean(row))


def _read_history(path: Path, upto: int) -> list[dict[str, float]]:
    """Rows for epochs 0..upto; later rows (written after the last checkpoint) are dropped from the file."""
    rows = cut_jsonl(path, upto)
    return [{k: (math.nan if v is None else v) for k, v in row.items()} for row in rows]


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a ``metrics.jsonl`` file (``None`` where a metric does not apply)."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def read_jsonl(path: Path, upto: int | None = None) -> list[dict[str, Any]]:
    """The rows of a per-epoch JSON-lines file, up to epoch ``upto`` (all if ``None``), stopping at a line an
    interruption cut short; ``[]`` if there is no file."""
    rows: list[dict[str, Any]] = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                break  # a line cut short by the interruption
            if upto is None or row.get("epoch", math.inf) <= upto:
                rows.append(row)
    return rows


def cut_jsonl(path: Path, upto: int) -> list[dict[str, Any]]:
    """Keep only the rows up to epoch ``upto`` (those a resumed run will not write again), in the file too."""
    rows = read_jsonl(path, upto)
    write_jsonl(path, rows)
    return rows


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    text = "".join(json.dumps(r) + "\n" for r in rows)
    atomic_write(path, lambda fh: fh.write(text.encode()))


def append_jsonl(path: Path, row: dict[str, Any]) -> None:
    with open(path, "a") as fh:
        fh.write(json.dumps(row) + "\n")
