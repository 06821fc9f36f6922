"""Per-epoch JSON-lines logs of a run folder (``metrics.jsonl``, ``tracking.jsonl``): read, append, cut back on resume.

A log never loses or invents rows silently: only a last line cut short by an interruption (no newline at
its end) is dropped; a damaged line anywhere else, or missing epochs, is a one-line
:class:`~stability.errors.BadInputError` naming the file and the line.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from stability.errors import BadInputError
from stability.files import atomic_write


def _clean(row: dict[str, float]) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}


def _write_history(path: Path, rows: list[dict[str, float]]) -> None:
    write_jsonl(path, [_clean(r) for r in rows])


def _append_history(path: Path, row: dict[str, float]) -> None:
    append_jsonl(path, _clean(row))


def _read_history(path: Path, upto: int) -> list[dict[str, float]]:
    """Rows for epochs 0..upto, one per epoch; later rows (written after the last checkpoint, and recomputed
    identically by the resumed run) are dropped from the file. Missing epochs are refused."""
    rows = read_jsonl(path, upto)
    epochs = [row.get("epoch") for row in rows]
    if epochs != list(range(upto + 1)):
        have = f"epochs {epochs[0]}..{epochs[-1]} ({len(epochs)} rows)" if epochs else "no rows"
        raise BadInputError(
            f"{path} holds {have} but the checkpoint is at epoch {upto}, so a resumed run would miss rows; "
            "restore the file, or start the run again in a new folder"
        )
    cut_jsonl(path, upto)
    return [{k: (math.nan if v is None else v) for k, v in row.items()} for row in rows]


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a ``metrics.jsonl`` file (``None`` where a metric does not apply); see :func:`read_jsonl`."""
    return read_jsonl(Path(path))


def read_jsonl(path: Path, upto: int | None = None) -> list[dict[str, Any]]:
    """The rows of a per-epoch JSON-lines file, up to epoch ``upto`` (all if ``None``); ``[]`` if there is no
    file. A last line cut short by an interruption (no newline after it) is left out.

    Raises:
        BadInputError: a damaged line elsewhere (its number and the fix named), or a row that is not an object.
    """
    rows: list[dict[str, Any]] = []
    if not path.exists():
        return rows
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInputError(f"{path} cannot be read ({type(exc).__name__}); restore it or start a new run") from None
    lines = text.split("\n")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            if number == len(lines):  # the last line, without its newline: a write cut short
                break
            raise BadInputError(
                f"{path} line {number} is damaged, and the rows after it would be lost; "
                "repair or delete that line, or start the run again in a new folder"
            ) from None
        if not isinstance(row, dict):
            raise BadInputError(f"{path} line {number} is not a JSON object; repair or delete that line")
        epoch = row.get("epoch", math.inf)
        if upto is None or (isinstance(epoch, (int, float)) and epoch <= upto):
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
