"""Files written so that a crash never leaves a half-written one."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any


def atomic_write(path: str | Path, write: Any) -> None:
    """Call ``write(file_object)`` on a temporary file beside ``path``, then rename it into place.

    A reader never sees a half-written file, and an interrupted write leaves the old file intact.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_checkpoint_path(path: str | Path) -> Path:
    """``path`` as a ``Path`` if it names a non-empty file, else a one-line :class:`CheckpointError`.

    Torch-free, so the command line refuses a wrong path before loading anything heavy.
    """
    from stability.errors import CheckpointError

    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file; check the path")
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder; pass the checkpoint file inside it (e.g. {path}/checkpoint.pt)")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty; the run that wrote it did not finish — rerun or resume it")
    return path
