"""One serializer from results to JSON: result dataclasses, tensors, arrays and plain containers alike.

Every JSON the toolkit writes (``stability analyze --json``, a sweep's ``results.json``, a demo's report)
goes through :func:`to_json`, so a number has one representation wherever it appears:

- a dataclass becomes an object of its fields, in declaration order, less those declared with
  :func:`omitted` (bulky evidence such as eigenvectors or per-sample tensors kept for figures), plus the
  properties it names in ``__json_properties__``;
- a tensor or NumPy array becomes a number (0-d) or nested lists; ``torch.dtype``, ``torch.device``,
  paths and enums become strings;
- NaN and infinities, which JSON cannot hold, become ``null``.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
from collections.abc import Mapping
from pathlib import Path, PurePath
from typing import Any

__all__ = ["dumps", "omitted", "to_json", "write_json"]


def omitted(**kwargs: Any) -> Any:
    """A dataclass field left out of the JSON (and of ``repr``): evidence too bulky for a report."""
    metadata = {**kwargs.pop("metadata", {}), "json": False}
    return dataclasses.field(repr=False, metadata=metadata, **kwargs)


def to_json(obj: Any) -> Any:
    """``obj`` as JSON-ready Python: dicts with string keys, lists, strings, finite floats, ints, bools, None."""
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out = {
            f.name: to_json(getattr(obj, f.name))
            for f in dataclasses.fields(obj)
            if f.metadata.get("json", True)
        }
        for name in getattr(obj, "__json_properties__", ()):
            out[name] = to_json(getattr(obj, name))
        return out
    if isinstance(obj, Mapping):
        return {str(k): to_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [to_json(v) for v in obj]
    if isinstance(obj, enum.Enum):
        return to_json(obj.value)
    if isinstance(obj, PurePath):
        return str(obj)
    module = type(obj).__module__
    if module.startswith("torch"):
        import torch

        if isinstance(obj, torch.Tensor):
            return to_json(obj.detach().cpu().tolist())
        if isinstance(obj, (torch.dtype, torch.device)):
            return str(obj)
    if module.startswith("numpy"):
        return to_json(obj.tolist())  # arrays to lists, NumPy scalars to Python numbers
    if module.startswith("sympy"):
        return to_json(float(obj))
    raise TypeError(f"cannot write a {type(obj).__name__} as JSON")


def dumps(obj: Any) -> str:
    """:func:`to_json` as indented text with a final newline."""
    return json.dumps(to_json(obj), indent=2) + "\n"


def write_json(path: str | Path, obj: Any) -> Path:
    """Write :func:`dumps` of ``obj`` to ``path`` atomically (a crash leaves the old file whole)."""
    from stability.files import atomic_write

    text = dumps(obj)
    atomic_write(path, lambda fh: fh.write(text.encode()))
    return Path(path)
