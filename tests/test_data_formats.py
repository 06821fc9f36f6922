"""On-disk formats, the restricted unpickler, and downloads, all on tiny files written in the exact formats.

IDX files are written byte by byte from the format's definition; CIFAR batches are written as Python 2 did
(``str`` as BINSTRING opcodes, numpy 1's ``numpy.core.multiarray._reconstruct``); downloads are served by a
local HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import io
import os
import pickle
import struct
import tarfile
import threading
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch

from stability.data import download as dl
from stability.data.bundle import load_data
from stability.data.download import download_dataset
from stability.data.formats import parse_idx, restricted_loads
from stability.data.spec import DataSpec
from stability.errors import DatasetError

RNG = np.random.default_rng(0)


# ------------------------------------------------------------------------------------------ writers


def idx_bytes(a: np.ndarray) -> bytes:
    """IDX: two zero bytes, type code 0x08 (uint8), number of dims, big-endian uint32 dims, then the data."""
    return bytes([0, 0, 0x08, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape) + a.astype(np.uint8).tobytes()


def write_mnist(root: Path, folder: str = "MNIST/raw", gz: bool = False, n: tuple[int, int] = (30, 12)) -> dict:
    out = {}
    raw = root / folder
    raw.mkdir(parents=True, exist_ok=True)
    for split, count, prefix in (("train", n[0], "train"), ("test", n[1], "t10k")):
        x = RNG.integers(0, 256, size=(count, 28, 28), dtype=np.uint8)
        y = np.arange(count, dtype=np.uint8) % 10
        for kind, arr in (("images-idx3", x), ("labels-idx1", y)):
            name = f"{prefix}-{kind}-ubyte"
            data = idx_bytes(arr)
            if gz:
                (raw / f"{name}.gz").write_bytes(gzip.compress(data))
            else:
                (raw / name).write_bytes(data)
        out[split] = (x, y)
    return out


class Py2Pickler(pickle._Pickler):  # type: ignore[name-defined]
    """Writes ``bytes`` as Python 2 ``str`` opcodes, which is how the CIFAR batches were pickled."""

    dispatch: ClassVar[dict] = dict(pickle._Pickler.dispatch)  # type: ignore[attr-defined]

    def save_py2_str(self, obj: bytes) -> None:
        n = len(obj)
        self.write((pickle.SHORT_BINSTRING + bytes([n]) if n < 256 else pickle.BINSTRING + struct.pack("<i", n)) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str


def py2_pickle(obj: object) -> bytes:
    buf = io.BytesIO()
    Py2Pickler(buf, protocol=2).dump(obj)
    # numpy 1 wrote this module name; numpy 2 writes numpy._core.multiarray. Real files carry the old one.
    return buf.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


def cifar_batch(n: int, num_classes: int, label_key: bytes) -> tuple[dict, np.ndarray, np.ndarray]:
    x = RNG.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    y = [int(v) for v in RNG.integers(0, num_classes, size=n)]
    return {b"batch_label": b"tiny", b"data": x, label_key: y, b"filenames": [b"f%d.png" % i for i in range(n)]}, x, y


def write_cifar10(root: Path, n: int = 4) -> tuple[np.ndarray, np.ndarray]:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    xs, ys = [], []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch, x, y = cifar_batch(n, 10, b"labels")
        (folder / name).write_bytes(py2_pickle(batch))
        xs.append(x)
        ys.append(y)
    return np.concatenate(xs[:5]), np.concatenate(ys[:5])


# ------------------------------------------------------------------------------------------ IDX


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("name, folder", [("mnist", "MNIST/raw"), ("fashion-mnist", "FashionMNIST/raw")])
def test_idx_files_load_in_torchvision_layout(tmp_path, name, folder, gz):
    data = write_mnist(tmp_path, folder, gz=gz)
    b = load_data(DataSpec(dataset=name, data_root=str(tmp_path), preprocess="none"))
    assert b.input_shape == (1, 28, 28) and b.num_classes == 10 and (len(b.train), len(b.test)) == (30, 12)
    for split, key in ((b.train, "train"), (b.test, "test")):
        x, y = data[key]
        idx = split.index.numpy()
        assert torch.equal(split.x, torch.from_numpy(x[idx][:, None] / 255.0).float())
        assert torch.equal(split.y_true, torch.from_numpy(y[idx].astype(np.int64)))


def test_parse_idx_reads_other_dtypes_big_endian():
    a = (np.arange(6).reshape(2, 3) - 2).astype(">i4")
    data = bytes([0, 0, 0x0C, 2]) + struct.pack(">2I", 2, 3) + a.tobytes()
    out = parse_idx(data)
    assert out.dtype == np.int32 and np.array_equal(out, a)


@pytest.mark.parametrize(
    "mutate, words",
    [
        (lambda b: b"\x00\x00\x05" + b[3:], "not an IDX file"),  # 0x05 is no IDX type code
        (lambda b: b"\x01" + b[1:], "bad magic"),
        (lambda b: b"\x00\x00\x08\x02" + b[4:], "declares shape"),  # 2 dims: the sizes no longer add up
        (lambda b: b[:-5], "truncated"),
        (lambda b: b + b"\x00", "truncated"),
    ],
)
def test_malformed_idx_names_the_file(tmp_path, mutate, words):
    write_mnist(tmp_path)
    path = tmp_path / "MNIST/raw/train-images-idx3-ubyte"
    path.write_bytes(mutate(path.read_bytes()))
    with pytest.raises(DatasetError, match=words) as err:
        load_data(DataSpec(dataset="mnist", data_root=str(tmp_path)))
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_idx_content_checks(tmp_path):
    write_mnist(tmp_path)
    raw = tmp_path / "MNIST/raw"
    spec = DataSpec(dataset="mnist", data_root=str(tmp_path))
    (raw / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.full(30, 10, dtype=np.uint8)))
    with pytest.raises(DatasetError, match=r"labels span \[10, 10\], expected \[0, 9\]"):
        load_data(spec)
    (raw / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(29, dtype=np.uint8)))
    with pytest.raises(DatasetError, match="30 images but .* 29 labels"):
        load_data(spec)
    (raw / "train-images-idx3-ubyte").write_bytes(idx_bytes(np.zeros((29, 32, 32), dtype=np.uint8)))
    with pytest.raises(DatasetError, match=r"shape \(N, 28, 28\)"):
        load_data(spec)
    (raw / "train-images-idx3-ubyte.gz").write_bytes(b"not gzip")
    (raw / "train-images-idx3-ubyte").unlink()
    with pytest.raises(DatasetError, match="train-images-idx3-ubyte.gz"):
        load_data(spec)


def test_missing_files_name_the_path_and_the_fix(tmp_path):
    write_mnist(tmp_path)
    (tmp_path / "MNIST/raw/t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DatasetError) as err:
        load_data(DataSpec(dataset="mnist", data_root=str(tmp_path)))
    msg = str(err.value)
    assert "t10k-labels-idx1-ubyte" in msg and "--data-root" in msg and "--download" in msg
    # data_root passed to load_data overrides the spec's (another machine, another folder).
    with pytest.raises(DatasetError, match="elsewhere"):
        load_data(DataSpec(dataset="mnist", data_root=str(tmp_path)), data_root=tmp_path / "elsewhere")


# ------------------------------------------------------------------------------------------ CIFAR


def test_cifar10_python_batches_load(tmp_path):
    x, y = write_cifar10(tmp_path)
    b = load_data(DataSpec(dataset="cifar10", data_root=str(tmp_path), preprocess="none"))
    assert b.input_shape == (3, 32, 32) and (len(b.train), len(b.test)) == (20, 4)
    idx = b.train.index.numpy()
    assert torch.equal(b.train.x, torch.from_numpy(x[idx].reshape(-1, 3, 32, 32) / 255.0).float())
    assert torch.equal(b.train.y_true, torch.from_numpy(y[idx]))
    # Channel-major rows: pixel (row 1, column 2) of the green channel is column 1024 + 32 + 2.
    assert b.train.x[0, 1, 1, 2] == float(x[idx[0], 1024 + 34]) / 255.0
    cropped = load_data(DataSpec(dataset="cifar10", data_root=str(tmp_path), center_crop=28, preprocess="none"))
    assert cropped.input_shape == (3, 28, 28) and torch.equal(cropped.train.x, b.train.x[:, :, 2:30, 2:30])


def test_cifar100_uses_fine_labels_and_accepts_bytes_keys(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    train, _, y = cifar_batch(6, 100, b"fine_labels")
    train[b"coarse_labels"] = [0] * 6
    (folder / "train").write_bytes(pickle.dumps(train, protocol=4))  # numpy 2 names, bytes keys
    (folder / "test").write_bytes(py2_pickle(cifar_batch(3, 100, b"fine_labels")[0]))
    b = load_data(DataSpec(dataset="cifar100", data_root=str(tmp_path), preprocess="none"))
    assert b.num_classes == 100 and torch.equal(b.train.y_true, torch.tensor(y)[b.train.index])


def test_restricted_unpickler_refuses_a_malicious_pickle_without_running_it(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    payload = pickle.dumps({"data": Evil()}, protocol=2)
    with pytest.raises(DatasetError, match=r"refers to (posix|nt)\.system"):
        restricted_loads(payload)
    assert not marker.exists()
    # Through the loader: one poisoned batch is refused and named.
    write_cifar10(tmp_path)
    bad = tmp_path / "cifar-10-batches-py/data_batch_3"
    bad.write_bytes(payload)
    with pytest.raises(DatasetError, match="data_batch_3.*refusing") as err:
        load_data(DataSpec(dataset="cifar10", data_root=str(tmp_path)))
    assert "\n" not in str(err.value) and not marker.exists()
    for evil in (b"cbuiltins\neval\n(S'1'\ntR.", b"c__builtin__\nopen\n(S'/etc/passwd'\ntR."):
        with pytest.raises(DatasetError, match="refusing"):
            restricted_loads(evil)


def test_malformed_cifar_batches_raise_dataset_errors(tmp_path):
    write_cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-py/test_batch"
    spec = DataSpec(dataset="cifar10", data_root=str(tmp_path))
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DatasetError, match="test_batch is not a readable CIFAR batch"):
        load_data(spec)
    batch, _, _ = cifar_batch(4, 10, b"labels")
    batch[b"labels"] = [0, 1, 2, 10]
    path.write_bytes(py2_pickle(batch))
    with pytest.raises(DatasetError, match=r"test_batch: labels span \[0, 10\]"):
        load_data(spec)
    batch[b"data"] = batch[b"data"][:, :100]
    path.write_bytes(py2_pickle(batch))
    with pytest.raises(DatasetError, match=r"\(N, 3072\)"):
        load_data(spec)


# ------------------------------------------------------------------------------------------ downloads


class _Quiet(http.server.SimpleHTTPRequestHandler):
    requests: ClassVar[list[str]] = []

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        type(self).requests.append(self.path)
        super().do_GET()


@pytest.fixture
def server(tmp_path, monkeypatch):
    """Serves ``tmp_path / "www"`` on a free port of 127.0.0.1; yields ``(folder, base_url, requests)``."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    www = tmp_path / "www"
    www.mkdir()
    handler = type("Handler", (_Quiet,), {"requests": []})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(www)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield www, f"http://127.0.0.1:{httpd.server_address[1]}/", handler.requests
    finally:
        httpd.shutdown()
        httpd.server_close()


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def make_cifar10_archive(www: Path, tmp_path: Path) -> tuple[Path, np.ndarray]:
    x, _ = write_cifar10(tmp_path / "src")
    archive = www / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "src/cifar-10-batches-py", arcname="cifar-10-batches-py")
    return archive, x


def test_load_data_downloads_mnist_through_the_standard_table(server, tmp_path, monkeypatch):
    www, url, requests = server
    data = write_mnist(www, folder=".", gz=True)
    sums = {p.name: md5(p) for p in www.glob("*.gz")}
    monkeypatch.setitem(dl.BASE_URLS, "mnist", url)
    monkeypatch.setitem(dl.CHECKSUMS, "mnist", sums)
    root = tmp_path / "data"
    b = load_data(DataSpec(dataset="mnist", preprocess="none"), data_root=root, download=True)
    x, _ = data["test"]
    assert torch.equal(b.test.x, torch.from_numpy(x[:, None] / 255.0).float())
    assert {p.name for p in files_under(root)} == set(sums) | {n[:-3] for n in sums}  # .gz kept, IDX beside it
    n_requests = len(requests)
    load_data(DataSpec(dataset="mnist"), data_root=root, download=True)
    assert len(requests) == n_requests == 4  # present files are not fetched again


def test_download_dataset_cifar_with_mirror_and_sha256(server, tmp_path):
    www, url, _ = server
    archive, x = make_cifar10_archive(www, tmp_path)
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    root = download_dataset("cifar10", tmp_path / "data", mirror=url.rstrip("/"), checksums={archive.name: sha})
    b = load_data(DataSpec(dataset="cifar10", preprocess="none"), data_root=root)
    assert torch.equal(b.train.x, torch.from_numpy(x[b.train.index.numpy()].reshape(-1, 3, 32, 32) / 255.0).float())
    assert not [p for p in root.iterdir() if p.name.startswith(".")]  # no temporary files or folders left


def test_a_corrupted_download_is_refused_and_nothing_is_left(server, tmp_path):
    www, url, _ = server
    archive, _ = make_cifar10_archive(www, tmp_path)
    good = md5(archive)
    blob = bytearray(archive.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    archive.write_bytes(bytes(blob))
    root = tmp_path / "data"
    with pytest.raises(DatasetError, match="failed its checksum"):
        download_dataset("cifar10", root, mirror=url, checksums={archive.name: good})
    assert files_under(root) == []
    # Even with a checksum that matches the broken archive, extraction fails cleanly.
    with pytest.raises(DatasetError, match="not a valid tar archive"):
        download_dataset("cifar10", root, mirror=url, checksums={archive.name: md5(archive)})
    assert files_under(root) == [] and [p.name for p in root.iterdir()] == []


def test_corrupt_gzip_and_http_errors(server, tmp_path):
    www, url, _ = server
    write_mnist(www, folder=".", gz=True)
    broken = www / "t10k-labels-idx1-ubyte.gz"
    broken.write_bytes(b"\x1f\x8b" + b"garbage")
    sums = {p.name: md5(p) for p in www.glob("*.gz")}
    root = tmp_path / "data"
    with pytest.raises(DatasetError, match="t10k-labels-idx1-ubyte.gz is not a valid gzip file"):
        download_dataset("mnist", root, mirror=url, checksums=sums)
    assert not (root / "MNIST/raw/t10k-labels-idx1-ubyte.gz").exists()
    assert not [p for p in files_under(root) if p.name.startswith(".")]
    broken.unlink()
    with pytest.raises(DatasetError, match="could not download .*t10k-labels-idx1-ubyte.gz"):
        download_dataset("mnist", root, mirror=url, checksums=sums)
    with pytest.raises(DatasetError, match="failed its checksum .*expected 8d4fb7e6c68d591d4c3dfef9ec88bf0d"):
        download_dataset("fashion-mnist", root, mirror=url)  # tiny files against the official table


@pytest.mark.parametrize("member", ["../evil.txt", "/tmp/evil.txt", "link"])
def test_unsafe_tar_members_are_refused(server, tmp_path, member):
    www, url, _ = server
    archive = www / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo(member)
        if member == "link":
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(info)
        else:
            info.size = 4
            tar.addfile(info, io.BytesIO(b"evil"))
    root = tmp_path / "data"
    with pytest.raises(DatasetError, match="unsafe path|not a plain file"):
        download_dataset("cifar10", root, mirror=url, checksums={archive.name: md5(archive)})
    assert files_under(root) == [] and not (tmp_path / "evil.txt").exists()


def test_embedded_datasets_need_no_download(tmp_path):
    assert download_dataset("digits", tmp_path / "x") == tmp_path / "x" and not (tmp_path / "x").exists()
    with pytest.raises(DatasetError, match="unknown dataset"):
        download_dataset("imagenet", tmp_path)
