"""What a checkpoint file must be before anything in it is unpickled, and the digest that seals its content.

:func:`check_archive` reads a ``.pt`` file as what ``torch.save`` writes — a zip archive of a pickle
(``*/data.pkl``) and one record per tensor storage — and refuses, before any object is built:

- a file that is not such an archive (a raw pickle, another format);
- a member whose CRC-32 does not match its bytes (torch does not check them, so a flipped byte would
  otherwise load as an altered weight), more members or more declared bytes than the file can hold;
- a pickle that is malformed (a truncated stream, a missing mark, an empty stack), nests containers deeper
  than :data:`MAX_DEPTH`, declares a storage larger than its record, or asks an allowed constructor for a
  huge allocation (``bytearray(2**31)``, a shape of more than :data:`MAX_ELEMENTS` elements).

It interprets the opcodes abstractly (pickletools' stack effects, tracking only depths, small integers,
strings and tuples), so its cost is one pass over the pickle, independent of the sizes the file declares.

:func:`digest` is a SHA-256 over a canonical walk of the checkpoint dict (every tensor's dtype, shape and
bytes; every number, string and key), stored in the checkpoint and compared on load.
"""

from __future__ import annotations

import hashlib
import io
import math
import pickletools
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from stability.errors import CheckpointError, first_line

UNSAFE_FLAG = "--unsafe-pickle"


MAX_DEPTH = 64  # containers within containers; a checkpoint needs about 6


MAX_ELEMENTS = 2**31  # elements of one declared shape


MAX_PICKLE_BYTES = 256 * 2**20  # the pickle alone; tensors live in their own records


MAX_MEMBERS = 1_000_000


_INT_OPS = {"INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4"}


_STR_OPS = {"STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8"}


_PUT_OPS = {"PUT", "BINPUT", "LONG_BINPUT"}


_GET_OPS = {"GET", "BINGET", "LONG_BINGET"}


_FILL_OPS = {"APPEND", "APPENDS", "SETITEM", "SETITEMS", "ADDITEMS", "BUILD"}  # mutate the object below


class _Item:
    """An abstract stack entry: nesting depth, and the value where it matters (int, str, global, tuple)."""

    __slots__ = ("depth", "kind", "value")

    def __init__(self, depth: int = 0, kind: str = "other", value: Any = None):
        self.depth, self.kind, self.value = depth, kind, value


def check_archive(path: Path) -> None:
    """Refuse ``path`` unless it is a sound ``torch.save`` archive (module docstring); one-line errors."""
    size = path.stat().st_size
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as fh:
            zipped = fh.read(4) == b"PK\x03\x04"
        if zipped:
            raise CheckpointError(
                f"{path} is not a readable checkpoint (truncated or corrupt: its zip directory is missing); "
                "rewrite it or resume the run that wrote it"
            )
        raise CheckpointError(
            f"{path} is not a readable checkpoint (not a zip archive as torch.save writes; a raw pickle is never "
            f"unpickled by default: pass {UNSAFE_FLAG} only if you made the file yourself and trust it)"
        )
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            if len(infos) > MAX_MEMBERS or sum(i.file_size for i in infos) > 8 * size + 2**20:
                raise CheckpointError(f"{path} declares more data than its {size} bytes can hold; it is corrupt")
            pickles = [i for i in infos if i.filename.endswith("/data.pkl")]
            if len(pickles) != 1 or pickles[0].file_size > MAX_PICKLE_BYTES:
                raise CheckpointError(f"{path} is not a torch checkpoint archive (no single data.pkl within limits)")
            bad = zf.testzip()
            if bad is not None:
                raise CheckpointError(
                    f"{path} is damaged: its member {bad} fails its CRC-32 check; use an intact copy or retrain"
                )
            prefix = pickles[0].filename[: -len("data.pkl")]
            records = {i.filename[len(prefix) + 5:]: i.file_size for i in infos
                       if i.filename.startswith(prefix + "data/")}  # fmt: skip
            data = zf.read(pickles[0])
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError, NotImplementedError,
            RuntimeError, OverflowError, KeyError, IndexError, UnicodeDecodeError, MemoryError) as exc:  # fmt: skip
        raise CheckpointError(
            f"{path} is not a readable checkpoint (truncated or corrupt: {type(exc).__name__}: {first_line(exc)}); "
            "rewrite it or resume the run that wrote it"
        ) from None
    scan_pickle(data, records, source=str(path))


def scan_pickle(data: bytes, records: dict[str, int], *, source: str) -> None:
    """Walk the pickle's opcodes on an abstract stack; raise :class:`CheckpointError` on what
    :func:`check_archive` refuses. ``records``: storage key -> its record's size in bytes."""
    stack: list[Any] = []  # _Item, or the string "mark"
    memo: dict[Any, _Item] = {}
    try:
        for op, arg, _ in _opcodes(data):
            name = op.name
            before = op.stack_before
            children: list[_Item] = []
            if pickletools.markobject in before:
                at = len(stack) - 1 - stack[::-1].index("mark")
                children = stack[at + 1:]
                del stack[at:]
                before = before[: before.index(pickletools.markobject)]
            popped = [stack.pop() for _ in before][::-1]
            if any(p == "mark" for p in popped + children):
                raise ValueError("a mark where an object was expected")
            children = children + popped[1:] if name in _FILL_OPS else children + popped
            if name in _FILL_OPS:
                target = popped[0]
                target.depth = max(target.depth, 1 + max((c.depth for c in children), default=0))
                _check_depth(target.depth, source)
                stack.append(target)
                continue
            if name in _PUT_OPS or name == "MEMOIZE":
                memo[arg if name != "MEMOIZE" else len(memo)] = stack[-1]
                continue
            if name in _GET_OPS:
                stack.append(memo[arg])
                continue
            if name == "MARK":
                stack.append("mark")
                continue
            depth = 1 + max((c.depth for c in children), default=0) if children else 0
            _check_depth(depth, source)
            if name in _INT_OPS:
                item = _Item(0, "int", int(arg) if not isinstance(arg, bool) else int(arg))
            elif name in _STR_OPS:
                item = _Item(0, "str", arg if isinstance(arg, str) else None)
            elif name in ("GLOBAL", "STACK_GLOBAL", "INST"):
                value = arg.replace(" ", ".") if isinstance(arg, str) else _global_name(children)
                item = _Item(depth, "global", value)
            elif name.startswith("TUPLE") or name == "EMPTY_TUPLE":
                item = _Item(depth if children else 1, "tuple", children)
            elif name in ("REDUCE", "NEWOBJ", "NEWOBJ_EX", "OBJ"):
                _check_call(popped if name != "OBJ" else children, records, source)
                item = _Item(depth)
            elif name == "BINPERSID" or name == "PERSID":
                _check_storage(popped[0] if popped else _Item(), records, source)
                item = _Item(depth)
            elif name == "STOP":
                break
            elif name in ("EMPTY_LIST", "EMPTY_DICT", "EMPTY_SET", "LIST", "DICT", "FROZENSET"):
                item = _Item(max(depth, 1))
            else:
                item = _Item(depth)
            for _ in op.stack_after:
                stack.append(item)
    except CheckpointError:
        raise
    except (ValueError, IndexError, KeyError, EOFError, UnicodeDecodeError, OverflowError, TypeError) as exc:
        raise CheckpointError(
            f"{source} holds a malformed pickle ({type(exc).__name__}: {first_line(exc)}); "
            "the file is corrupt, use an intact copy or retrain"
        ) from None


def _opcodes(data: bytes) -> Any:
    """``pickletools.genops``, lazily, without the warning a mutated STRING opcode's escapes raise."""
    stream = pickletools.genops(io.BytesIO(data))
    while True:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            item = next(stream, None)
        if item is None:
            return
        yield item


def _global_name(children: list[_Item]) -> str:
    parts = [c.value for c in children if c.kind == "str"]
    return ".".join(parts) if len(parts) == 2 else "?"


def _check_depth(depth: int, source: str) -> None:
    if depth > MAX_DEPTH:
        raise CheckpointError(
            f"{source} nests containers more than {MAX_DEPTH} deep, which no checkpoint does; refusing it"
        )


def _ints(item: _Item) -> list[int]:
    if item.kind == "int":
        return [item.value]
    if item.kind == "tuple":
        return [v for c in item.value for v in _ints(c)] if item.value else []
    return []


def _check_call(popped: list[_Item], records: dict[str, int], source: str) -> None:
    """A call of an allowed constructor: no argument may ask for a huge allocation."""
    if len(popped) < 2:
        return
    func, args = popped[0], popped[-1]
    if func.kind == "global" and func.value == "builtins.bytearray":
        if any(abs(v) > max(records.values(), default=0) + 2**20 for v in _ints(args)):
            raise CheckpointError(f"{source} asks for a bytearray larger than the file; refusing it")
    if args.kind == "tuple":
        for child in args.value:
            if child.kind == "tuple" and child.value and all(c.kind == "int" for c in child.value):
                if math.prod(max(c.value, 0) for c in child.value) > MAX_ELEMENTS:
                    raise CheckpointError(
                        f"{source} declares a tensor shape of more than {MAX_ELEMENTS} elements; refusing it"
                    )


def _check_storage(pid: _Item, records: dict[str, int], source: str) -> None:
    """``('storage', type, key, location, numel)``: the record must exist and hold ``numel`` elements."""
    items = pid.value if pid.kind == "tuple" else None
    if not items or len(items) < 5 or items[2].kind != "str" or items[4].kind != "int":
        raise CheckpointError(f"{source} holds a malformed storage reference; the file is corrupt")
    key, numel = items[2].value, items[4].value
    if key not in records:
        raise CheckpointError(f"{source} refers to a tensor record {key!r} that it does not hold; the file is corrupt")
    if not 0 <= numel <= records[key]:  # an element is at least one byte
        raise CheckpointError(
            f"{source} declares {numel} elements for a record of {records[key]} bytes; the file is corrupt"
        )




def digest(obj: Any) -> str:
    """SHA-256 (hex) of a canonical walk of ``obj``: dicts by sorted key, each value tagged by its type,
    floats exactly (``float.hex``), tensors by dtype, shape and bytes. Cost: one pass over the bytes."""
    h = hashlib.sha256()
    _feed(h, obj)
    return h.hexdigest()


def _feed(h: Any, obj: Any) -> None:
    if isinstance(obj, torch.Tensor):
        if obj.layout != torch.strided:
            raise CheckpointError(f"a {obj.layout} tensor cannot be checked; store dense tensors")
        t = obj.detach().cpu().resolve_conj().resolve_neg().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(obj, dict):
        h.update(f"D{len(obj)}".encode())
        for key in sorted(obj, key=repr):
            _feed(h, key)
            _feed(h, obj[key])
    elif isinstance(obj, (list, tuple)):
        h.update(f"{type(obj).__name__[0]}{len(obj)}".encode())
        for item in obj:
            _feed(h, item)
    elif isinstance(obj, float):
        h.update(f"F{obj.hex()};".encode())
    elif isinstance(obj, (bool, int, str, type(None))):
        h.update(f"{type(obj).__name__}:{obj!r};".encode())
    else:
        h.update(f"{type(obj).__qualname__}:{obj!r};".encode())
