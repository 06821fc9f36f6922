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


MAX_NAME_BYTES = 255  # one path component, on every common file system


def check_output_path(path: str | Path, option: str, *, folder: bool = False) -> Path:
    """``path`` as a ``Path`` if a file (``folder=False``) or folder can be written there, else a one-line
    :class:`BadInputError` naming ``option``: empty, a component over 255 bytes, an existing thing of the
    other kind, a file where a parent folder should be, or a parent that is not writable. Creates nothing."""
    from stability.errors import BadInputError

    if str(path).strip() == "":
        raise BadInputError(f"{option} is empty; name a {'folder' if folder else 'file'}")
    path = Path(path)
    long = [part for part in path.parts if len(os.fsencode(part)) > MAX_NAME_BYTES]
    if long:
        raise BadInputError(f"{option}: the name {long[0][:40]}... is over {MAX_NAME_BYTES} bytes; choose a shorter one")
    if path.exists() and path.is_dir() != folder:
        what = "a folder" if path.is_dir() else "a file"
        raise BadInputError(f"{option} {path} is {what}; name a {'folder' if folder else 'file'} instead")
    parent = path.parent if not path.exists() else path
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise BadInputError(f"{option} {path} lies under {parent}, which is a file; choose another path")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise BadInputError(f"{option} {path}: {parent} is not writable; choose a path you can write to")
    return path


def remove_stale_temps(folder: Path) -> list[Path]:
    """Delete the temporary files :func:`atomic_write` leaves when a process is killed mid-write
    (``.NAME.*.tmp``); call only while holding the folder's :func:`folder_lock`. Returns what was removed."""
    removed = []
    for tmp in folder.glob(".*.tmp") if folder.is_dir() else ():
        tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed


LOCK_NAME = ".lock"


class folder_lock:
    """An exclusive lock on a run folder for one writer, held for the life of the ``with`` block.

    ``fcntl.flock`` on ``FOLDER/.lock``: the kernel releases it when the process exits, however it exits, so a
    lock is never stale in effect. The file keeps the holder's pid; a pid left behind by a process that died
    without releasing it is reported in :attr:`stale` (the lock is then taken over). A second writer gets a
    one-line :class:`BadInputError`. Where ``fcntl`` does not exist (Windows) the folder is not locked.
    """

    def __init__(self, folder: str | Path, option: str = "--out"):
        self.folder, self.option = Path(folder), option
        self.stale: int | None = None
        self._fh: Any = None

    def __enter__(self) -> folder_lock:
        from stability.errors import BadInputError

        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        fh = open(self.folder / LOCK_NAME, "a+")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            fh.close()
            raise BadInputError(
                f"{self.option} {self.folder} is in use by process {holder}; wait for it to finish or choose another {self.option}"
            ) from None
        fh.seek(0)
        previous = fh.read().strip()
        if previous.isdigit() and int(previous) != os.getpid():
            self.stale = int(previous)  # its holder died without releasing the lock (killed)
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        self._fh = fh
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fh is not None:
            self._fh.seek(0)
            self._fh.truncate()
            self._fh.close()  # closing releases the flock
            self._fh = None
