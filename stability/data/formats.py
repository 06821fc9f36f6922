"""Readers for the two on-disk formats: IDX (MNIST, Fashion-MNIST) and the CIFAR python pickles.

Both readers validate what they read (magic numbers, sizes, shapes, label ranges) and raise
:class:`~stability.errors.DatasetError` naming the file on anything unexpected. The CIFAR batches are
pickles; they are read by :class:`RestrictedUnpickler`, which can only build numpy arrays, so a file that
tries to import or call anything else is refused before any of it runs.
"""

from __future__ import annotations

import gzip
import io
import pickle
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from stability.errors import DatasetError

# IDX type codes (third magic byte) -> big-endian numpy dtype.
_IDX_DTYPES = {
    0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8"),
}  # fmt: skip


def read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when its name ends in ``.gz``."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                return fh.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        raise DatasetError(f"cannot read {path}: {exc}; delete it and fetch it again") from None


def parse_idx(data: bytes, path: Path | str = "<bytes>") -> np.ndarray:
    """Decode one IDX file (LeCun's MNIST format) into an array of its declared dtype and shape.

    Layout: bytes 0-1 zero, byte 2 the type code (``0x08`` = uint8, ...), byte 3 the number of dims ``k``,
    then ``k`` big-endian uint32 sizes, then ``prod(sizes)`` items in C order, big-endian. The length must
    match exactly: a truncated or padded file is refused.
    """
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise DatasetError(f"{path} is not an IDX file (bad magic number {data[:4].hex() or 'empty'})")
    dtype, ndim = _IDX_DTYPES[data[2]], data[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(data) < header:
        raise DatasetError(f"{path}: IDX header declares {ndim} dims but the file is {len(data)} bytes long")
    shape = tuple(int(s) for s in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        raise DatasetError(
            f"{path}: IDX header declares shape {shape} ({expected} bytes) but the file has {len(data)} bytes"
            "; it is truncated or corrupt, fetch it again"
        )
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def read_idx_pair(
    images: Path, labels: Path, image_shape: tuple[int, int], num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(N, H, W)`` uint8 and labels ``(N,)`` int64 from an IDX image file and its label file.

    Checks the magic numbers (``0x00000803`` images, ``0x00000801`` labels), the image size, that both
    files hold the same number of items, and that labels lie in ``[0, num_classes)``.
    """
    x = parse_idx(read_bytes(images), images)
    y = parse_idx(read_bytes(labels), labels)
    if x.dtype != np.uint8 or x.ndim != 3 or x.shape[1:] != image_shape:
        raise DatasetError(
            f"{images}: expected uint8 images of shape (N, {image_shape[0]}, {image_shape[1]}), got {x.dtype} {x.shape}"
        )
    if y.dtype != np.uint8 or y.ndim != 1:
        raise DatasetError(f"{labels}: expected a 1-D uint8 label file, got {y.dtype} {y.shape}")
    if len(x) != len(y):
        raise DatasetError(f"{images} holds {len(x)} images but {labels} holds {len(y)} labels")
    _check_labels(y, num_classes, labels)
    return x, y.astype(np.int64)


def _check_labels(y: np.ndarray, num_classes: int, path: Path) -> None:
    if y.size and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise DatasetError(f"{path}: labels span [{int(y.min())}, {int(y.max())}], expected [0, {num_classes - 1}]")


def _allowed_globals() -> dict[tuple[str, str], Any]:
    """The only globals a CIFAR batch references: numpy's array reconstruction, ndarray and dtype.

    The batches were written by Python 2 with numpy 1 (``numpy.core.multiarray._reconstruct``); numpy 2
    renamed the module to ``numpy._core``, so both spellings map to the same function.
    """
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]
    return {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that can only rebuild numpy arrays; any other global raises :class:`DatasetError`.

    ``pickle`` executes whatever callables a file names (``os.system`` included), so loading untrusted
    pickles with ``pickle.load`` runs arbitrary code. Here :meth:`find_class`, the one place where a pickle
    reaches outside itself, consults an allow-list; persistent ids are refused too.
    """

    def __init__(self, file: io.BufferedIOBase, source: Path | str = "<bytes>"):
        # latin1 turns Python 2 ``str`` into ``str`` byte-for-byte, which is what numpy expects for the raw
        # array buffer inside the pickle (``bytes`` would also work for arrays but not for dtype fields).
        super().__init__(file, encoding="latin1")
        self.source = source
        self.allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self.allowed[(module, name)]
        except KeyError:
            raise DatasetError(
                f"{self.source} refers to {module}.{name}, which a CIFAR batch never needs; refusing to unpickle it"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise DatasetError(f"{self.source} uses persistent ids, which a CIFAR batch never needs; refusing it")


def restricted_loads(data: bytes, source: Path | str = "<bytes>") -> Any:
    """Unpickle ``data`` with :class:`RestrictedUnpickler`; malformed data also raises :class:`DatasetError`."""
    try:
        return RestrictedUnpickler(io.BytesIO(data), source).load()
    except DatasetError:
        raise
    except Exception as exc:  # noqa: BLE001 - a malformed pickle raises almost anything (EOFError, KeyError, ...)
        raise DatasetError(f"{source} is not a readable CIFAR batch ({type(exc).__name__}: {exc})") from None


def read_cifar_batch(path: Path, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(N, 3, 32, 32)`` uint8 and labels ``(N,)`` int64 from one CIFAR python batch.

    A batch is a dict with ``data``: uint8 ``(N, 3072)``, each row 1,024 red then green then blue values in
    row-major 32 x 32 order, and ``label_key`` (``labels`` for CIFAR-10, ``fine_labels`` for CIFAR-100): N ints.
    Keys may be ``str`` or ``bytes`` (Python 2 files read with ``encoding="bytes"`` elsewhere).
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from None
    obj = restricted_loads(raw, path)
    if not isinstance(obj, dict):
        raise DatasetError(f"{path}: expected a dict, got {type(obj).__name__}")
    batch = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}
    if "data" not in batch or label_key not in batch:
        raise DatasetError(f"{path}: expected keys 'data' and {label_key!r}, found {sorted(map(str, batch))}")
    x, y = batch["data"], np.asarray(batch[label_key])
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3 * 32 * 32:
        got = f"{getattr(x, 'dtype', type(x).__name__)} {getattr(x, 'shape', '')}"
        raise DatasetError(f"{path}: 'data' must be uint8 of shape (N, 3072), got {got}")
    if y.ndim != 1 or len(y) != len(x) or (y.size and not np.issubdtype(y.dtype, np.integer)):
        raise DatasetError(f"{path}: {label_key!r} must hold {len(x)} integer labels, got {y.dtype} {y.shape}")
    _check_labels(y, num_classes, path)
    return x.reshape(-1, 3, 32, 32), y.astype(np.int64)
