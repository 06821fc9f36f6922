"""Seeded generators of hostile inputs: bad checkpoint files, bad command lines, damaged run folders.

Every case is small (a few KB) and reproducible from ``(kind, seed)``. A checkpoint case is its bytes and
whether it may load at all (``may_load``: a byte change the file can absorb, e.g. in zip padding, must load
to exactly the original content). A command line is its arguments and the option the error must name.
Payloads that would run code touch a marker file, which the harness checks is never created.
"""

from __future__ import annotations

import io
import math
import os
import pickle
import pickletools
import random
import struct
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from stability.data.spec import DataSpec
from stability.models.registry import build_model
from stability.models.spec import ModelSpec
from stability.training.checkpoint import Checkpoint, seal
from stability.training.spec import TrainSpec

MODEL = ModelSpec(arch="mlp", kwargs={"widths": [4]})


@dataclass(frozen=True)
class FileCase:
    name: str
    data: bytes
    may_load: bool = False  # True: loading may succeed, and must then give the original content


@dataclass(frozen=True)
class CommandCase:
    name: str
    args: tuple[str, ...]
    names: str  # the option or file the one error line must name


def valid_dict() -> dict:
    """A small, valid checkpoint dict (MLP 64-4-10 on digits) with optimizer and RNG state."""
    torch.manual_seed(0)
    model = build_model(MODEL, (1, 8, 8), 10)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(2, 1, 8, 8)).sum().backward()
    opt.step()
    resume = {"optimizer": opt.state_dict(), "generator": torch.Generator().get_state(),
              "torch_rng": torch.get_rng_state(), "step": 1, "seconds": 0.5}  # fmt: skip
    ckpt = Checkpoint(model=MODEL, input_shape=(1, 8, 8), num_classes=10, state_dict=model.state_dict(),
                      data=DataSpec(n_train=100, n_test=50), training=TrainSpec(epochs=3), epoch=1,
                      metrics={"train_acc": 0.5}, resume=resume)  # fmt: skip
    return ckpt.to_dict()


def saved(obj: object) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def with_pickle(archive: bytes, pkl: bytes) -> bytes:
    """``archive`` with its ``data.pkl`` replaced by ``pkl``, every CRC correct (so the pickle checks act)."""
    src = zipfile.ZipFile(io.BytesIO(archive))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, pkl if info.filename.endswith("/data.pkl") else src.read(info))
    return out.getvalue()


def data_pkl(archive: bytes) -> bytes:
    zf = zipfile.ZipFile(io.BytesIO(archive))
    return zf.read(next(n for n in zf.namelist() if n.endswith("/data.pkl")))


# ---------------------------------------------------------------- payloads that would run code


class _Call:
    """Pickles as ``func(*args)``: what a hostile file makes an unrestricted unpickler do."""

    def __init__(self, func: Callable, *args: object):
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


def payloads(marker: Path) -> list[tuple[str, object]]:
    import builtins
    import subprocess

    touch = f"open({str(marker)!r}, 'w').close()"
    return [
        ("os.system", _Call(os.system, f"touch {marker}")),
        ("eval", _Call(builtins.eval, touch)),
        ("exec", _Call(builtins.exec, touch)),
        ("subprocess", _Call(subprocess.call, ["touch", str(marker)])),
        ("path.touch", _Call(Path.touch, marker)),
        ("open", _Call(builtins.open, str(marker), "w")),
    ]


def malicious(marker: Path, base: dict) -> Iterator[FileCase]:
    """Each payload raw, nested in containers, inside a checkpoint's fields, as a raw pickle and in an archive."""
    import_get = (b"cbuiltins\ngetattr\n(cbuiltins\n__import__\n(Vos\ntRVsystem\ntR(V"
                  + f"touch {marker}".encode() + b"\ntR.")  # getattr(__import__('os'), 'system')('touch ...')
    yield FileCase("evil-getattr-raw", import_get)
    yield FileCase("evil-getattr-zip", with_pickle(saved(base), import_get))
    yield FileCase("evil-getattr-nested", with_pickle(saved(base), b"(]" + import_get[:-1] + b"a]a." ))
    for name, payload in payloads(marker):
        shapes = {
            "bare": payload, "list": [[payload]], "dict": {"a": {"b": payload}}, "tuple": (1, (payload,)),
            "field": {**base, "metrics": {"x": payload}}, "weights": {**base, "state_dict": {"w": payload}},
        }  # fmt: skip
        for shape, obj in shapes.items():
            yield FileCase(f"evil-{name}-{shape}-zip", saved(obj))
            for protocol in (0, 2, 4, 5):
                yield FileCase(f"evil-{name}-{shape}-raw{protocol}", pickle.dumps(obj, protocol=protocol))


# ---------------------------------------------------------------- damaged bytes


def random_bytes(rng: random.Random) -> FileCase:
    n = rng.choice([1, 7, 64, 512, 4096])
    head = rng.choice([b"", b"PK\x03\x04", b"\x80\x02", b"\x80\x05"])
    return FileCase(f"random-{n}", head + bytes(rng.getrandbits(8) for _ in range(n)))


def truncated(rng: random.Random, base: bytes) -> FileCase:
    k = rng.randrange(1, len(base))
    return FileCase(f"truncated-{k}", base[:k])


def flipped(rng: random.Random, base: bytes) -> FileCase:
    """1 to 8 bytes changed anywhere in the archive (headers, pickle, tensor data, directory)."""
    data = bytearray(base)
    count = rng.choice([1, 1, 2, 4, 8])
    for _ in range(count):
        i = rng.randrange(len(data))
        data[i] ^= rng.randrange(1, 256)
    return FileCase(f"flip-{count}", bytes(data), may_load=True)


def pickle_mutated(rng: random.Random, base: bytes) -> FileCase:
    """The pickle changed (bytes flipped, inserted, deleted, a span duplicated) with every CRC kept right."""
    pkl = bytearray(data_pkl(base))
    how = rng.choice(["flip", "insert", "delete", "duplicate", "opcode"])
    i = rng.randrange(len(pkl))
    if how == "flip":
        pkl[i] ^= rng.randrange(1, 256)
    elif how == "insert":
        pkl[i:i] = bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 8)))
    elif how == "delete":
        del pkl[i:i + rng.randrange(1, 8)]
    elif how == "duplicate":
        j = min(len(pkl), i + rng.randrange(1, 32))
        pkl[i:i] = pkl[i:j]
    else:
        pkl[i] = rng.choice(b"()]}aeuRbQlt.hjqrgp0123NKJMG")
    return FileCase(f"pickle-{how}", with_pickle(base, bytes(pkl)), may_load=True)


def nested(depth: int, base: bytes) -> FileCase:
    """Lists within lists ``depth`` deep, written opcode by opcode (the pickler itself would recurse)."""
    pkl = b"\x80\x02" + b"]" * depth + b"a" * (depth - 1) + b"."
    return FileCase(f"nested-{depth}", with_pickle(base, pkl))


def huge(base: bytes) -> Iterator[FileCase]:
    """Tiny files that declare huge allocations to the allowed constructors."""
    g = b"cbuiltins\nbytearray\n"
    for n in (2**31, 2**33, 2**40):
        long1 = n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True)
        yield FileCase(f"bytearray-{n}", with_pickle(base, b"\x80\x02" + g + b"\x8a" + bytes([len(long1)]) + long1 + b"\x85R."))
        yield FileCase(f"bytearray-{n}-in-dict", with_pickle(
            base, b"\x80\x02}X\x01\x00\x00\x00a" + g + b"\x8a" + bytes([len(long1)]) + long1 + b"\x85Rs."))
    pkl = data_pkl(base)
    ops = list(pickletools.genops(pkl))
    for k, (op, _, pos) in enumerate(ops):  # the numel of each storage reference, made huge
        if op.name == "BINPERSID" and ops[k - 1][0].name == "TUPLE":
            at = ops[k - 2][2]
            size = ops[k - 1][2] - at  # the bytes of the int opcode that holds numel
            for numel in (2**31, 2**40):
                patched = pkl[:at] + b"\x8a\x08" + struct.pack("<q", numel) + pkl[at + size:]
                yield FileCase(f"storage-numel-{numel}", with_pickle(base, patched))
            break
    yield FileCase("declared-bytes", b"\x80\x02B" + struct.pack("<I", 2**31) + b"xx")


# ---------------------------------------------------------------- well-formed files with wrong content

BAD_VALUES: list[object] = [None, "x", "", -1, 0, 2**70, -(2**70), 1.5, math.nan, math.inf, -math.inf, True,
                            [1], [[1]], {"a": 1}, complex(1, 1), torch.tensor(1.0), b"\x00"]  # fmt: skip


def field_edits(base: dict) -> Iterator[tuple[str, dict]]:
    """Every spec and top-level field set to every bad value, and removed; each file sealed (a valid digest)."""
    for part in ("model", "data", "training"):
        for key in list(base[part]):
            for i, value in enumerate(BAD_VALUES):
                yield f"{part}.{key}={i}", {**base, part: {**base[part], key: value}}
            rest = {k: v for k, v in base[part].items() if k != key}
            yield f"{part}.{key}-missing", {**base, part: rest}
    for key in ("epoch", "metrics", "resume", "state_dict", "model", "data", "training", "version"):
        for i, value in enumerate(BAD_VALUES):
            yield f"{key}={i}", {**base, key: value}
        yield f"{key}-missing", {k: v for k, v in base.items() if k != key}
    for key in ("optimizer", "generator", "torch_rng", "step", "seconds"):
        for i, value in enumerate(BAD_VALUES):
            yield f"resume.{key}={i}", {**base, "resume": {**base["resume"], key: value}}


def weight_edits(base: dict) -> Iterator[tuple[str, dict]]:
    sd = base["state_dict"]
    first = next(iter(sd))
    changes = {
        "nan": sd[first].clone().fill_(math.nan), "inf": sd[first].clone().fill_(-math.inf),
        "complex": sd[first].to(torch.complex64), "complex-nan": torch.full_like(sd[first], math.nan, dtype=torch.complex64),
        "int": sd[first].to(torch.int64), "bool": sd[first] > 0, "float64": sd[first].double(),
        "shape": sd[first][:1], "scalar": torch.tensor(1.0), "sparse": sd[first].to_sparse(),
        "empty": torch.empty(0), "half": sd[first].half(),
    }  # fmt: skip
    for name, tensor in changes.items():
        yield f"weight-{name}", {**base, "state_dict": {**sd, first: tensor}}
    yield "weight-extra", {**base, "state_dict": {**sd, "extra": torch.ones(3)}}
    yield "weight-missing", {**base, "state_dict": {k: v for k, v in sd.items() if k != first}}
    yield "weight-empty-dict", {**base, "state_dict": {}}
    for widths in ([8_000_000], [10**12], [4, 4], []):  # a spec far bigger (or other) than its weights
        yield f"widths-{widths}", {**base, "model": {**base["model"], "kwargs": {"widths": widths}}}
    for shape in ([1, 8, 9], [1, 2**20, 2**20], [0], [1, 8, 8, 1, 1]):
        yield f"input-shape-{shape}", {**base, "model": {**base["model"], "input_shape": shape}}
    yield "v1-no-arch", {**{k: v for k, v in base.items() if k != "digest"}, "version": 1,
                         "model": {k: v for k, v in base["model"].items() if k != "arch"}}  # fmt: skip
    yield "v1-no-dataset", {**{k: v for k, v in base.items() if k != "digest"}, "version": 1,
                            "data": {k: v for k, v in base["data"].items() if k != "dataset"}}  # fmt: skip
    yield "digest-wrong", {**base, "digest": "0" * 64}
    yield "unsealed-edit", {**base, "epoch": 2}


def sealed(obj: dict) -> bytes:
    try:
        return saved(seal(obj) if obj.get("version") == 2 else obj)
    except Exception:  # noqa: BLE001 - a value the digest cannot take: write it unsealed
        return saved(obj)


def checkpoint_cases(seed: int, count: int, marker: Path) -> list[FileCase]:
    """``count`` random damaged files (bytes, truncations, flips, pickle mutations) plus every fixed case
    (malicious, nested, huge, field and weight edits), in a seeded order."""
    rng = random.Random(seed)
    base_dict = valid_dict()
    base = saved(base_dict)
    cases: list[FileCase] = list(malicious(marker, base_dict))
    cases += [nested(d, base) for d in (65, 1000, 100_000)]
    cases += list(huge(base))
    for name, obj in field_edits(base_dict):
        cases.append(FileCase(f"field-{name}", sealed(obj), may_load=True))
    for name, obj in weight_edits(base_dict):
        unsealed = name in ("digest-wrong", "unsealed-edit")
        cases.append(FileCase(name, saved(obj) if unsealed else sealed(obj), may_load=name in ("weight-float64", "weight-half")))
    makers = [lambda: random_bytes(rng), lambda: truncated(rng, base), lambda: flipped(rng, base),
              lambda: pickle_mutated(rng, base)]  # fmt: skip
    cases += [rng.choice(makers)() for _ in range(count)]
    return cases


# ---------------------------------------------------------------- command lines

NUMBERS = ["-1", "0", "nan", "inf", "-inf", "1e400", "18446744073709551616", "abc", "", "1.5"]


def command_cases(seed: int, count: int, tmp: Path, checkpoint: Path) -> list[CommandCase]:
    """Bad values for the options of train, analyze and demo, and bad output paths; ``count`` random
    combinations after the fixed ones. Every case must fail before any work."""
    rng = random.Random(seed)
    a_file = tmp / "a-file"
    a_file.write_text("x")
    paths = {"empty": "", "file": str(a_file), "under-file": str(a_file / "sub"), "long": str(tmp / ("n" * 300))}
    cases: list[CommandCase] = []
    train = ("train", "--epochs", "1", "--no-progress", "--n-train", "50")
    numeric_train = ["--lr", "--momentum", "--weight-decay", "--lr-decay", "--batch-size", "--epochs", "--seed",
                     "--checkpoint-every", "--n-train", "--n-test", "--n-heldout", "--corruption-prob",
                     "--noise-fraction", "--center-crop", "--mnist1d-samples", "--data-seed", "--split-threshold",
                     "--split-start", "--split-stop"]  # fmt: skip
    valid = {"0": {"--momentum", "--weight-decay", "--lr-decay", "--batch-size", "--epochs", "--seed", "--n-heldout",
                   "--corruption-prob", "--noise-fraction", "--data-seed", "--split-threshold", "--split-start",
                   "--split-stop"},
             "1.5": set(), "-1": set()}  # fmt: skip
    for option in numeric_train:
        for value in NUMBERS:
            if option in valid.get(value, set()) or (value in ("1.5", "18446744073709551616")
                                                     and option in ("--lr", "--weight-decay")):  # fmt: skip
                continue
            if value == "1.5" and option in ("--momentum", "--lr-decay", "--corruption-prob", "--noise-fraction",
                                             "--split-threshold"):  # fmt: skip
                continue
            out = str(tmp / f"run{len(cases)}")
            cases.append(CommandCase(f"train{option}={value}", (*train, "--out", out, option, value), option))
    for option, values in {"--arch-kwargs": ['{"activation": [1]}', '{"widths": [-1]}', '{"widths": "x"}', "[1]",
                                             '{"widths": [1e300]}', '{"dropout": 2}', "{", '{"widths": [8000000000]}'],
                           "--arch": ["nope", ""], "--dataset": ["nope", ""], "--corruption": ["nope"],
                           "--loss": ["nope"], "--optimizer": ["nope"], "--objective": ["nope"],
                           "--device": ["nope", "cuda:99", "meta", ""]}.items():  # fmt: skip
        for value in values:
            names = f"{option}|{value!r}|{option[2:]}"  # the flag, or the value it refused
            out = str(tmp / f"run{len(cases)}")
            cases.append(CommandCase(f"train{option}={value}", (*train, "--out", out, option, value),
                                     names if option != "--arch-kwargs" else "arch|widths|activation|dropout"))  # fmt: skip
    for name, value in paths.items():
        cases.append(CommandCase(f"train--out-{name}", (*train, "--out", value), "--out"))
    analyze = ("analyze", str(checkpoint), "--no-progress")
    for option in ["--max-samples", "--chunk-size", "--sigma", "--noise-samples", "--spectral-iters", "--spectral-tol",
                   "--probes", "--seed", "--curvature-samples", "--top-k", "--tol", "--max-iter", "--trace-probes",
                   "--density-probes", "--density-steps", "--nonuniformity-subset", "--lr", "--batch-size"]:  # fmt: skip
        for value in ("-1", "nan", "inf", "abc", "18446744073709551616"):
            if value == "inf" and option in ("--max-samples", "--chunk-size"):
                continue
            if value == "18446744073709551616" and option != "--seed":  # a huge budget is a valid (slow) request
                continue
            cases.append(CommandCase(f"analyze{option}={value}", (*analyze, option, value), option))
    for name, value in paths.items():
        cases.append(CommandCase(f"analyze--json-{name}", (*analyze, "--json", value), "--json"))
        cases.append(CommandCase(f"analyze--plots-{name}", (*analyze, "--plots", value), "--plots"))
        cases.append(CommandCase(f"demo--out-{name}", ("demo", "tanh-two-point", "--out", value), "--out"))
    for value in ("nope", "cuda:7", "meta"):
        cases.append(CommandCase(f"analyze--device={value}", (*analyze, "--device", value), "--device"))
    for value in ("-1", "18446744073709551616", "abc"):
        cases.append(CommandCase(f"demo--seed={value}", ("demo", "tanh-two-point", "--seed", value, "--out", str(tmp / "d")), "--seed"))
    cases.append(CommandCase("analyze-missing", ("analyze", str(tmp / "nope.pt")), "nope.pt"))
    cases.append(CommandCase("analyze-folder", ("analyze", str(tmp)), str(tmp)))
    cases.append(CommandCase("unknown-option", ("train", "--bogus"), "--bogus"))
    fixed = list(cases)
    for _ in range(count):
        a, b = rng.sample(fixed, 2)  # two bad options together: the first one checked is named
        if a.args[0] == b.args[0] == "train" and "--out" not in (a.names, b.names):
            extra = b.args[len(train) + 2:]
            cases.append(CommandCase(f"{a.name}+{b.name}", a.args + extra, a.names + "|" + b.names))
    return cases
