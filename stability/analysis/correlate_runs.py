"""Run folders as one table: the hyperparameters that vary, the measures and the generalization gap, a row per run.

A run folder (written by ``stability train`` or by a sweep, ``OUT/runs/NAME``) holds

- ``config.json``: ``{"model": ..., "data": ..., "training": ...}``, the specs of the run. Every field
  (nested ones by dotted path, ``model.kwargs.widths``) that takes more than one value across the folders
  is a hyperparameter; fields that vary together (``data.seed`` and ``training.seed`` set alike) are one.
- ``metrics.jsonl``: a row per epoch; the last gives the gap, ``train_acc − test_acc`` (``gap="accuracy"``)
  or ``test_loss − train_loss`` (``gap="loss"``), with the labels the run was trained on.
- ``measures.json``: a flat JSON object, measure name -> number; and/or ``analysis.json``, the report of
  ``stability analyze --json`` on the run's checkpoint, whose training-split means and curvature numbers
  become measures (:data:`ANALYSIS_MEASURES`). Where both name a measure, measures.json is used.

Plain Python (no NumPy, no torch), so a bad folder is refused before anything heavy loads.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stability.errors import BadInputError
from stability.training.logs import read_metrics

CONFIG, METRICS, MEASURES_JSON, ANALYSIS_JSON = "config.json", "metrics.jsonl", "measures.json", "analysis.json"
SPECS = ("model", "data", "training")
MIN_RUNS = 3

# Measures taken from an analysis.json report (schema "stability-analysis"): name -> path in the report.
# The training split's per-sample means are added as "train.<key>" for every key the report holds.
ANALYSIS_MEASURES: dict[str, tuple[str, ...]] = {
    "hessian.sharpness": ("curvature", "hessian", "sharpness"),
    "hessian.trace": ("curvature", "hessian", "trace", "estimate"),
    "ggn.sharpness": ("curvature", "ggn", "sharpness"),
    "ggn.trace": ("curvature", "ggn", "trace", "estimate"),
    "nonuniformity.s": ("curvature", "nonuniformity", "s"),
    "linear_stability.ratio": ("curvature", "linear_stability", "ratio"),
    "gd.eta_lambda": ("curvature", "gd", "eta_lambda"),
    "sgd.sufficient": ("curvature", "sgd", "sufficient", "value"),
    "sgd.exact": ("curvature", "sgd", "exact", "value"),
    "param_norm": ("curvature", "applicability", "param_norm"),
    "first_layer.lhs": ("bounds", "first_layer", "lhs"),
    "update_input_sensitivity": ("bounds", "update_input_sensitivity", "gauss_newton_fro", "mean"),
}  # fmt: skip


@dataclass(frozen=True)
class Hyperparameter:
    """One hyperparameter of a set of runs: the config ``fields`` it stands for and its ``values``, one per run
    (a tuple of the fields' values where several fields vary together)."""

    name: str
    fields: tuple[str, ...]
    values: tuple[Any, ...]

    __json_properties__ = ("levels",)

    @property
    def levels(self) -> list[Any]:
        """The distinct values, in order (numbers ascending, others by their JSON text)."""
        return sorted({_key(v): v for v in self.values}.values(), key=_order)

    @property
    def codes(self) -> list[int]:
        """Per run, the index of its value in :attr:`levels`."""
        index = {_key(v): i for i, v in enumerate(self.levels)}
        return [index[_key(v)] for v in self.values]

    @property
    def numeric(self) -> bool:
        return all(_is_number(v) for v in self.values)


@dataclass(frozen=True)
class RunTable:
    """A row per run: its folder, its gap, its value of each hyperparameter and of each measure.

    Attributes:
        runs: the run folders (or any labels), ``(n,)``.
        gap: the generalization gap of each run, ``(n,)``; ``gap_kind`` says which (``accuracy``, ``loss``).
        hyperparameters: those that vary across the runs (:func:`derive_hyperparameters`).
        measures: measure name -> its value in each run, ``(n,)``, all finite.
        notes: what was left out while reading, and why.
    """

    runs: tuple[str, ...]
    gap: tuple[float, ...]
    hyperparameters: tuple[Hyperparameter, ...]
    measures: dict[str, tuple[float, ...]]
    gap_kind: str = "accuracy"
    notes: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        n = len(self.runs)
        if n < MIN_RUNS:
            raise BadInputError(f"correlate needs at least {MIN_RUNS} runs, got {n}; pass more run folders")
        columns = {"gap": self.gap, **{f"hyperparameter {h.name}": h.values for h in self.hyperparameters},
                   **{f"measure column {k!r}": v for k, v in self.measures.items()}}  # fmt: skip
        for name, column in columns.items():
            if len(column) != n:
                raise BadInputError(f"{name} has {len(column)} values for {n} runs; give one per run")
        for name, column in [("gap", self.gap), *((f"measure column {k!r}", v) for k, v in self.measures.items())]:
            if not all(_is_number(v) and math.isfinite(v) for v in column):
                raise BadInputError(f"{name} holds a value that is not a finite number; every run needs one")
        if not self.hyperparameters:
            raise BadInputError(f"no hyperparameter varies across the {n} runs; the runs must differ in their "
                                "config (learning rate, width, seed, ...) for the granulated τ and the "
                                "conditional mutual information")  # fmt: skip
        if not self.measures:
            raise BadInputError("there are no measures to correlate; give each run a measures.json or analysis.json")
        if len(set(self.gap)) == 1:
            raise BadInputError(f"the generalization gap is {self.gap[0]} in every run; there is nothing to "
                                "correlate it with")  # fmt: skip

    @classmethod
    def from_columns(cls, gap: Sequence[float], hyperparameters: Mapping[str, Sequence[Any]],
                     measures: Mapping[str, Sequence[float]], *, runs: Sequence[str] | None = None,
                     gap_kind: str = "accuracy") -> RunTable:  # fmt: skip
        """A table from columns: ``hyperparameters`` maps a name to its value in each run (those that vary
        are kept, those that vary together are merged), ``measures`` a name to its values."""
        n = len(gap)
        for name, column in hyperparameters.items():
            if len(column) != n:
                raise BadInputError(f"hyperparameter {name} has {len(column)} values for {n} runs; give one per run")
        rows = [{name: column[i] for name, column in hyperparameters.items()} for i in range(n)]
        return cls(runs=tuple(runs) if runs is not None else tuple(f"run {i}" for i in range(n)),
                   gap=tuple(float(g) for g in gap), hyperparameters=derive_hyperparameters(rows),
                   measures={k: tuple(float(v) for v in col) for k, col in measures.items()},
                   gap_kind=gap_kind)  # fmt: skip

    @property
    def labels(self) -> list[str]:
        """Short distinct names of the runs: the folder names where those are distinct, else the paths."""
        names = [Path(r).name or r for r in self.runs]
        return names if len(set(names)) == len(names) else list(self.runs)


def derive_hyperparameters(rows: Sequence[Mapping[str, Any]], ignore: Sequence[str] = ()) -> tuple[Hyperparameter, ...]:
    """The fields of ``rows`` (one flat mapping per run, dotted names) that take more than one value.

    A field absent from a row counts as the value ``None``. Fields that split the runs into the same groups
    (each value of one goes with one value of the other) are merged into one hyperparameter named
    ``a+b``: varying one without the other is impossible in these runs. A hyperparameter is named by its
    fields' last dotted parts (``lr``; ``seed`` for ``data.seed`` and ``training.seed`` set alike) unless
    another shares that name; then by the full paths. ``ignore`` names fields (full or last part)
    to leave out, e.g. ``seed`` to treat runs that differ only in their seeds as replicates.
    """
    names = sorted({k for row in rows for k in row})
    for item in ignore:
        if not any(item in (name, _leaf(name)) for name in names):
            raise BadInputError(f"ignore {item!r} names no config field; fields: {_listing(names)}")
    varying = [k for k in names if len({_key(row.get(k)) for row in rows}) > 1
               and not any(i in (k, _leaf(k)) for i in ignore)]  # fmt: skip
    groups: dict[tuple[int, ...], list[str]] = {}
    for k in varying:
        groups.setdefault(_partition([row.get(k) for row in rows]), []).append(k)
    # A group is named by its fields' last parts ("seed" for data.seed and training.seed), unless two share it.
    short = ["+".join(dict.fromkeys(_leaf(k) for k in fields)) for fields in groups.values()]
    out = []
    for name, fields in zip(short, groups.values()):
        values = [tuple(row.get(k) for k in fields) if len(fields) > 1 else row.get(fields[0]) for row in rows]
        name = name if short.count(name) == 1 else "+".join(fields)
        out.append(Hyperparameter(name, tuple(fields), tuple(values)))
    return tuple(out)


def read_runs(folders: Sequence[str | Path], *, gap: str = "accuracy", measures: Sequence[str] = (),
              ignore: Sequence[str] = (), drop_incomplete: bool = False) -> RunTable:  # fmt: skip
    """Read run folders into a :class:`RunTable` (see the module docstring for what a folder holds).

    A folder without ``config.json`` that holds a sweep's ``runs/`` stands for every run in it.

    Args:
        gap: ``accuracy`` or ``loss``.
        measures: the measures to keep (default: all that the runs give).
        ignore: config fields not to count as hyperparameters (:func:`derive_hyperparameters`).
        drop_incomplete: leave out a measure that some runs lack (listed in ``notes``) instead of refusing.

    Raises:
        BadInputError: one line naming the folder, the file and the fix, for a missing or unreadable file,
            a config.json that is not the three specs, a last metrics row without the gap, a measure that is
            not a number, a measure missing in some runs, fewer than 3 runs or no varying hyperparameter.
    """
    from stability.analysis.correlate_options import GAPS
    from stability.checks import check_choice

    check_choice("gap", gap, GAPS)
    paths = expand_folders(folders)
    rows, gaps, found = [], [], []
    for path in paths:
        rows.append(_flatten({k: v for k, v in _config(path).items() if k in SPECS}))
        gaps.append(_gap(path, gap))
        found.append(_measures(path))
    names = sorted({name for m in found for name in m})
    if measures:
        unknown = [m for m in measures if m not in names]
        if unknown:
            raise BadInputError(f"measure {unknown[0]!r} is in none of the runs; they give: {_listing(names)}")
        names = [m for m in names if m in set(measures)]
    kept, notes = {}, []
    for name in names:
        lacking = [str(p) for p, m in zip(paths, found) if name not in m]
        if not lacking:
            kept[name] = tuple(m[name] for m in found)
        elif drop_incomplete:
            notes.append(f"measure {name!r} left out: missing in {len(lacking)} of {len(paths)} runs")
        else:
            raise BadInputError(
                f"the values of {name!r} are missing (or not finite) in {len(lacking)} of {len(paths)} runs "
                f"({_listing(lacking, 3)}); add it there, or set drop_incomplete to leave such measures out"
            )
    return RunTable(runs=tuple(str(p) for p in paths), gap=tuple(gaps), measures=kept, gap_kind=gap,
                    hyperparameters=derive_hyperparameters(rows, ignore), notes=tuple(notes))  # fmt: skip


def expand_folders(folders: Sequence[str | Path]) -> list[Path]:
    """The run folders: each given folder, or the runs of a sweep's output folder (``OUT/runs/*/``)."""
    out: list[Path] = []
    for folder in map(Path, folders):
        if not folder.exists():
            raise BadInputError(f"{folder}: no such folder; pass run folders written by stability train or a sweep")
        if not folder.is_dir():
            raise BadInputError(f"{folder} is a file; pass the run folder that holds {CONFIG} and {METRICS}")
        if (folder / CONFIG).exists() or not (folder / "runs").is_dir():
            out.append(folder)
            continue
        runs = sorted(p for p in (folder / "runs").iterdir() if (p / CONFIG).is_file())
        if not runs:
            raise BadInputError(f"{folder}/runs holds no run folder with a {CONFIG}; is the sweep started?")
        out.extend(runs)
    seen: dict[Path, Path] = {}
    for path in out:
        if path.resolve() in seen:
            raise BadInputError(f"{path} is given twice (also as {seen[path.resolve()]}); pass each run once")
        seen[path.resolve()] = path
    return out


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadInputError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        why = f"line {exc.lineno}: {exc.msg}" if isinstance(exc, json.JSONDecodeError) else type(exc).__name__
        raise BadInputError(f"{path} is not readable JSON ({why}); rewrite or remove it") from None


def _config(folder: Path) -> dict[str, Any]:
    path = folder / CONFIG
    if not path.is_file():
        raise BadInputError(f"{folder} has no {CONFIG}; pass run folders written by stability train or a sweep")
    config = _read_json(path)
    if not isinstance(config, dict) or not any(isinstance(config.get(k), dict) for k in SPECS):
        raise BadInputError(f"{path} is not a run's config (an object with 'model', 'data' and 'training' specs)")
    return config


def _gap(folder: Path, kind: str) -> float:
    path = folder / METRICS
    if not path.is_file():
        raise BadInputError(f"{folder} has no {METRICS}; the run never finished an epoch")
    rows = read_metrics(path)
    if not rows:
        raise BadInputError(f"{path} has no rows; the run never finished an epoch")
    last = rows[-1]
    train, test = ("train_acc", "test_acc") if kind == "accuracy" else ("test_loss", "train_loss")
    for key in (train, test):
        if not (_is_number(last.get(key)) and math.isfinite(last[key])):
            raise BadInputError(f"{path}: the last row has no number {key!r}, so no {kind} gap; "
                                "train with a test split, or choose the other gap")  # fmt: skip
    return float(last[train]) - float(last[test])


def _measures(folder: Path) -> dict[str, float]:
    """The finite measures of a run: from analysis.json, then measures.json over them."""
    out: dict[str, float] = {}
    if (folder / ANALYSIS_JSON).is_file():
        out.update(_from_analysis(folder))
    if (folder / MEASURES_JSON).is_file():
        path = folder / MEASURES_JSON
        given = _read_json(path)
        if not isinstance(given, dict):
            raise BadInputError(f"{path} must be a JSON object mapping measure names to numbers")
        for name, value in given.items():
            if value is not None and not _is_number(value):
                raise BadInputError(f"{path}: the value of {name!r} is {json.dumps(value)[:40]}, not a number; "
                                    f"{MEASURES_JSON} maps names to numbers (null where not defined)")  # fmt: skip
            if value is not None and math.isfinite(value):
                out[name] = float(value)
    elif not out:
        raise BadInputError(f"{folder} has neither {MEASURES_JSON} nor {ANALYSIS_JSON}; write the run's measures "
                            "there (e.g. stability analyze --json)")  # fmt: skip
    return out


def _from_analysis(folder: Path) -> dict[str, float]:
    path = folder / ANALYSIS_JSON
    report = _read_json(path)
    if isinstance(report, list):
        mine = [r for r in report if isinstance(r, dict) and _is_of(r.get("checkpoint"), folder)]
        if len(mine) != 1:
            raise BadInputError(f"{path} holds {len(report)} reports and {len(mine)} of them is of this folder's "
                                "checkpoint; write one report per run folder")  # fmt: skip
        report = mine[0]
    if not isinstance(report, dict) or report.get("schema") != "stability-analysis":
        raise BadInputError(f"{path} is not a report of stability analyze --json (no schema 'stability-analysis')")
    train = (report.get("splits") or {}).get("train") or {}
    paths = {**ANALYSIS_MEASURES,
             **{f"train.{key}": ("splits", "train", "measures", key, "mean") for key in train.get("measures") or {}}}
    out = {}
    for name, keys in paths.items():
        value: Any = report
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        if _is_number(value) and math.isfinite(value):
            out[name] = float(value)
    return out


def _is_of(checkpoint: Any, folder: Path) -> bool:
    if not isinstance(checkpoint, str):
        return False
    parent = Path(checkpoint).parent
    return parent.name == folder.name or parent.resolve() == folder.resolve()


def _flatten(spec: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in spec.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _partition(values: Sequence[Any]) -> tuple[int, ...]:
    """Each value's order of first appearance: equal for two columns that group the rows alike."""
    first: dict[str, int] = {}
    return tuple(first.setdefault(_key(v), len(first)) for v in values)


def _key(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _order(value: Any) -> tuple[int, Any]:
    return (0, float(value)) if _is_number(value) else (1, _key(value))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _leaf(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def _listing(items: Sequence[str], most: int = 12) -> str:
    shown = ", ".join(items[:most])
    return shown + (f", ... ({len(items)} in all)" if len(items) > most else "")
