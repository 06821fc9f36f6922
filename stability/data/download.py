"""Fetch the standard dataset files, verify them, and unpack them into torchvision's layout.

Every file is streamed into a temporary file next to its destination, hashed on the way, and renamed into
place only once its checksum matches; a file that fails its checksum is deleted. Archives are unpacked into a
temporary folder after checking that no member is absolute, climbs out with ``..``, or is a link or device,
and their folder is then moved into place. An interrupted or failed download therefore never leaves a
half-written file under a name the loaders would read.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zlib
from pathlib import Path, PurePosixPath
from typing import Any

from stability.data.sources import CIFAR_FILES, DATASETS, IDX_FILES, IDX_FOLDERS, ON_DISK, missing_files
from stability.errors import DatasetError

BASE_URLS = {
    "mnist": "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "fashion-mnist": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "cifar10": "https://www.cs.toronto.edu/~kriz/",
    "cifar100": "https://www.cs.toronto.edu/~kriz/",
}


ARCHIVES = {"cifar10": "cifar-10-python.tar.gz", "cifar100": "cifar-100-python.tar.gz"}


# md5 of the published files (the same table torchvision verifies against).
CHECKSUMS: dict[str, dict[str, str]] = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
    "cifar10": {"cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a"},
    "cifar100": {"cifar-100-python.tar.gz": "eb9058c3a382ffc7106e4002c42a8d85"},
}


_CHUNK = 1 << 20


_TIMEOUT_S = 60.0


def _hasher(expected: str, name: str) -> Any:
    """md5 for 32 hex digits, sha256 for 64."""
    if len(expected) == 32:
        return hashlib.md5(usedforsecurity=False)
    if len(expected) == 64:
        return hashlib.sha256()
    raise DatasetError(f"checksum for {name} must be 32 (md5) or 64 (sha256) hex digits, got {expected!r}")


def file_digest(path: Path, expected: str) -> str:
    """Hex digest of ``path`` with the algorithm ``expected`` implies (md5 or sha256)."""
    h = _hasher(expected, path.name)
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch(url: str, dest: Path, expected: str) -> Path:
    """Download ``url`` to ``dest`` atomically, verifying its checksum before the final rename.

    Raises :class:`DatasetError` on a network error or a checksum mismatch; the partial download is deleted
    in every failure case, and ``dest`` is only ever the complete, verified file.
    """
    if urllib.parse.urlsplit(url).scheme not in ("http", "https", "file"):
        raise DatasetError(f"refusing to download {url}: only http(s) and file URLs are supported")
    h = _hasher(expected, dest.name)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as response:
                    for chunk in iter(lambda: response.read(_CHUNK), b""):
                        h.update(chunk)
                        out.write(chunk)
            except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                raise DatasetError(
                    f"could not download {url} ({reason}); check the connection or the mirror, "
                    f"or place the file at {dest} by hand"
                ) from None
        got = h.hexdigest()
        if got != expected.lower():
            raise DatasetError(
                f"{url} failed its checksum (got {got}, expected {expected}); the file was deleted, "
                "try again or use another mirror"
            )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _verified_or_fetched(url: str, dest: Path, expected: str) -> Path:
    """Reuse ``dest`` if present with the right checksum; otherwise (re)download it."""
    if dest.is_file():
        if file_digest(dest, expected) == expected.lower():
            return dest
        dest.unlink()
    return fetch(url, dest, expected)


def gunzip(src: Path, dest: Path) -> Path:
    """Decompress ``src`` into ``dest`` atomically; a corrupt ``src`` is deleted and reported."""
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, gzip.open(src, "rb") as fh:
            shutil.copyfileobj(fh, out, _CHUNK)
        os.replace(tmp, dest)
    except (OSError, EOFError, zlib.error) as exc:
        src.unlink(missing_ok=True)
        raise DatasetError(f"{src} is not a valid gzip file ({exc}); it was deleted, download it again") from None
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _check_member(member: tarfile.TarInfo, archive: Path) -> None:
    path = PurePosixPath(member.name)
    if path.is_absolute() or ".." in path.parts or member.name.startswith(("/", "\\")) or ":" in path.parts[0]:
        raise DatasetError(f"{archive} contains the unsafe path {member.name!r}; refusing to extract it")
    if not (member.isfile() or member.isdir()):
        raise DatasetError(f"{archive} contains {member.name!r}, which is not a plain file or folder; refusing it")


def extract_tar(archive: Path, root: Path, top: str) -> Path:
    """Safely unpack folder ``top`` of a (gzipped) tar ``archive`` into ``root / top``.

    Members are checked first (:func:`_check_member`) and the archive is unpacked into a temporary folder
    under ``root``; only then is ``top`` moved into place (renamed whole when ``root / top`` does not exist
    yet, file by file otherwise). A corrupt or unsafe archive is deleted and reported; nothing is left.
    """
    tmpdir = Path(tempfile.mkdtemp(dir=root, prefix=".extract-"))
    try:
        try:
            if archive.name.endswith(".gz"):  # tar stops at its end marker; reading on checks gzip's CRC
                with gzip.open(archive, "rb") as fh:
                    while fh.read(_CHUNK):
                        pass
            with tarfile.open(archive, "r:*") as tar:
                members = tar.getmembers()
                for member in members:
                    _check_member(member, archive)
                if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4: a second, independent guard
                    tar.extractall(tmpdir, members=members, filter="data")
                else:  # pragma: no cover - older Pythons rely on _check_member alone
                    tar.extractall(tmpdir, members=members)
        except DatasetError:
            archive.unlink(missing_ok=True)
            raise
        except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
            archive.unlink(missing_ok=True)
            raise DatasetError(
                f"{archive} is not a valid tar archive ({exc}); it was deleted, download it again"
            ) from None
        src, dest = tmpdir / top, root / top
        if not src.is_dir():
            archive.unlink(missing_ok=True)
            raise DatasetError(f"{archive} holds no {top}/ folder; it is not the expected archive and was deleted")
        if not dest.exists():
            os.replace(src, dest)
        else:
            for path in sorted(p for p in src.rglob("*") if p.is_file()):
                target = dest / path.relative_to(src)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, target)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    return dest


def download_dataset(
    name: str, root: str | Path, *, mirror: str | None = None, checksums: dict[str, str] | None = None
) -> Path:
    """Make dataset ``name`` available under ``root`` in torchvision's layout, downloading what is missing.

    Args:
        name: one of :data:`DATASETS`; ``digits`` and ``mnist1d`` need no files (returns ``root`` at once).
        root: the data folder (created if needed).
        mirror: base URL replacing the official one; files are fetched from ``mirror + file name``.
        checksums: ``{file name: hex digest}`` (md5 or sha256) overriding the built-in table.

    Returns:
        ``root``, ready to pass as ``data_root``.

    MNIST and Fashion-MNIST: the four ``.gz`` files go to ``<root>/MNIST/raw`` (``FashionMNIST/raw``) and
    are decompressed next to themselves. CIFAR: the archive goes to ``<root>`` and its folder is unpacked
    there. Files already present (and verified, for archives) are not fetched again.
    """
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    root = Path(root).expanduser()
    if name not in ON_DISK or not missing_files(name, root):
        return root
    table = {**CHECKSUMS[name], **(checksums or {})}
    base = mirror if mirror is not None else BASE_URLS[name]
    base = base if base.endswith("/") else base + "/"

    root.mkdir(parents=True, exist_ok=True)
    if name in IDX_FOLDERS:
        folder = root / IDX_FOLDERS[name]
        folder.mkdir(parents=True, exist_ok=True)
        for file in (f for pair in IDX_FILES.values() for f in pair):
            if (folder / file).is_file():
                continue
            gz = _verified_or_fetched(base + file + ".gz", folder / f"{file}.gz", table[file + ".gz"])
            gunzip(gz, folder / file)
    else:
        archive_name = ARCHIVES[name]
        archive = _verified_or_fetched(base + archive_name, root / archive_name, table[archive_name])
        extract_tar(archive, root, CIFAR_FILES[name][0])
    still = missing_files(name, root)
    if still:
        raise DatasetError(f"{name}: the download did not provide {still[0]}; the mirror may serve other files")
    return root
