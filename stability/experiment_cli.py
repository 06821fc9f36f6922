"""The command line and the results files every experiment script shares.

A script declares an :class:`Experiment`: its parts, a protocol per scale, a plan (the runs of each part)
and a summary (numbers, figures, markdown). :func:`experiment_app` turns that into a Typer command with the
options every script takes (``--quick``/``--smoke``, ``--dataset``, ``--data-root``, ``--arch``, ``--epochs``,
``--part``, ``--out``, ``--device``, ``--seed``), trains the plan with a :class:`~stability.experiment.Sweep`
and writes ``results.json`` and ``results.md`` atomically.
"""

# No ``from __future__ import annotations``: Typer reads the command's annotations, which hold the
# script's own help texts, at run time.

import dataclasses
import json
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Optional

import torch
import typer

from .checkpoint import atomic_write
from .errors import BadInputError, StabilityError
from .experiment import RunResult, RunSpec, Sweep
from .report import json_safe
from .specs import DataSpec, TrainSpec

RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"


def write_results(out: str | Path, results: Mapping[str, Any], markdown: str) -> tuple[Path, Path]:
    """Write ``results.json`` (non-finite floats as ``null``) and ``results.md``, each atomically."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(json_safe(results), indent=2) + "\n"
    atomic_write(out / RESULTS_JSON, lambda fh: fh.write(text.encode()))
    atomic_write(out / RESULTS_MD, lambda fh: fh.write(markdown.encode()))
    return out / RESULTS_JSON, out / RESULTS_MD


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub markdown table; floats shown with 3 decimals, ``None`` as an em dash."""

    def cell(v: Any) -> str:
        if v is None:
            return "—"
        if isinstance(v, float):
            return f"{v:.3f}" if math.isfinite(v) else "—"
        return str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n\n"


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def pick_scale(quick: bool, smoke: bool) -> str:
    """``--smoke`` (seconds, what the tests run), ``--quick`` (digits on a laptop CPU), else ``full``."""
    if quick and smoke:
        raise BadInputError("--quick and --smoke exclude each other; pass one")
    return "smoke" if smoke else "quick" if quick else "full"


def default_out(script: str, scale: str, dataset: str, seed: int = 0) -> Path:
    """``runs/SCRIPT/SCALE-DATASET`` (``-seedN`` for seed N > 0): reruns of the same command land in (and
    resume) the same folder."""
    return Path("runs") / script / (f"{scale}-{dataset}" + (f"-seed{seed}" if seed else ""))


def with_seed(protocol: Any, seed: int) -> Any:
    """The protocol with every data and training spec in it seeded by ``seed`` (subsets, corruptions, noise,
    initialization, batch order)."""
    changes = {
        f.name: dataclasses.replace(value, seed=seed)
        for f in dataclasses.fields(protocol)
        if isinstance(value := getattr(protocol, f.name), (DataSpec, TrainSpec))
    }
    return dataclasses.replace(protocol, **changes)


def protocol_section(title: str, settings: Mapping[str, Any], *, wall_seconds: float, device: str) -> str:
    """The head of a ``results.md``: what was run, where, and how long it took."""
    lines = [f"# {title}", "", "| setting | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in settings.items()]
    lines += [f"| device | {device} |", f"| wall time of this invocation | {wall_seconds:.0f} s |", ""]
    return "\n".join(lines) + "\n\n"


def describe_training(t: TrainSpec) -> str:
    """One line for a results table, e.g. ``sgd lr 0.05 momentum 0.9, batch 64, 150 epochs, cross-entropy``."""
    opt = f"{t.optimizer} lr {t.lr:g}" + (f" momentum {t.momentum:g}" if t.optimizer == "sgd" else "")
    decay = f", lr x{t.lr_decay:g}/epoch" if t.lr_decay != 1.0 else ""
    batch = "full batch" if t.batch_size == 0 else f"batch {t.batch_size}"
    return f"{opt}{decay}, {batch}, {t.epochs} epochs, {t.loss}"


def plain(obj: Any) -> Any:
    """A protocol dataclass (holding specs, tuples, numbers) as JSON-ready dicts and lists."""
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    return obj


@dataclass(frozen=True)
class Invocation:
    """What one command line of an experiment script asked for, resolved: scale, dataset, parts, folder."""

    script: str
    scale: str
    dataset: str
    parts: tuple[str, ...]
    out: Path
    device: str
    seed: int = 0
    started: float = field(default_factory=time.perf_counter)

    @classmethod
    def resolve(
        cls, script: str, *, quick: bool, smoke: bool, dataset: str | None, parts: Sequence[str],
        known: Sequence[str], out: Path | None, device: str, seed: int = 0,
    ) -> "Invocation":  # fmt: skip
        """Defaults: digits for ``--quick``/``--smoke``, CIFAR-10 at full scale; ``runs/SCRIPT/SCALE-DATASET``."""
        if seed < 0:
            raise BadInputError(f"--seed must be non-negative, got {seed}")
        scale = pick_scale(quick, smoke)
        dataset = dataset or ("cifar10" if scale == "full" else "digits")
        bad = sorted(set(parts) - set(known))
        if bad:
            raise BadInputError(f"unknown part(s) {', '.join(bad)}; choose from {', '.join(known)}")
        chosen = tuple(x for x in known if x in parts)
        out = Path(out) if out else default_out(script, scale, dataset, seed)
        return cls(script, scale, dataset, chosen, out, device, seed)

    def protocol(self, protocol: Any) -> Any:
        """``protocol`` under this invocation's seed."""
        return with_seed(protocol, self.seed)

    def finish(
        self, title: str, protocol: Any, runs: Mapping[str, RunResult], results: Mapping[str, Any], markdown: str,
        settings: Mapping[str, Any],
    ) -> tuple[Path, Path]:  # fmt: skip
        """Write ``results.json`` (the protocol, the parts, the numbers) and ``results.md`` (a protocol table, then
        ``markdown``)."""
        wall = time.perf_counter() - self.started
        settings = {"scale": self.scale, "dataset": self.dataset, "seed": self.seed, **settings, "runs": len(runs),
                    "training seconds (all runs)": f"{sum(r.final['seconds'] for r in runs.values()):.0f}"}  # fmt: skip
        head = protocol_section(title, settings, wall_seconds=wall, device=self.device)
        payload = {"experiment": self.script, "scale": self.scale, "dataset": self.dataset, "seed": self.seed,
                   "parts": list(self.parts),
                   "protocol": plain(protocol), "wall_seconds": wall, **results}  # fmt: skip
        return write_results(self.out, payload, head + markdown)


@contextmanager
def script_errors() -> Iterator[None]:
    """Bad input inside an experiment script: one line on stderr and exit code 2, as the ``stability`` CLI."""
    try:
        yield
    except StabilityError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


@dataclass(frozen=True)
class Experiment:
    """An experiment script as data.

    Attributes:
        script: its name (``runs/SCRIPT/...``, ``results.json``'s ``experiment``).
        title: the head of ``results.md``.
        parts: the parts ``--part`` chooses from, in the order they run.
        protocol: ``(scale, dataset, arch) -> protocol``, a frozen dataclass holding the specs
            (``arch`` ``None``: the scale's own).
        epochs_of: the protocol's :class:`TrainSpec` field whose epochs ``--epochs`` overrides.
        plan: ``(protocol, parts) -> {part: [RunSpec, ...]}``; runs with one name are trained once.
        summarize: ``(protocol, {part: [RunResult, ...]}, out) -> (results, markdown)``; draws the figures.
        settings: ``protocol -> {setting: value}`` for the table at the head of ``results.md``.
    """

    script: str
    title: str
    parts: tuple[str, ...]
    protocol: Callable[[str, str, Optional[str]], Any]
    plan: Callable[[Any, tuple[str, ...]], Mapping[str, Sequence[RunSpec]]]
    summarize: Callable[[Any, dict[str, list[RunResult]], Path], tuple[dict, str]]
    settings: Callable[[Any], Mapping[str, Any]]
    epochs_of: str = "training"

    def make_protocol(self, scale: str, dataset: str, arch: Optional[str], epochs: Optional[int]) -> Any:
        p = self.protocol(scale, dataset, arch)
        if epochs is None:
            return p
        return dataclasses.replace(p, **{self.epochs_of: dataclasses.replace(getattr(p, self.epochs_of), epochs=epochs)})


def experiment_app(
    experiment: Experiment, *, help: str, command_help: str, quick_help: str, arch_help: str, epochs_help: str,
    epochs_min: int = 1,
) -> typer.Typer:  # fmt: skip
    """The script's Typer app: resolve the options, train the plan (skipping finished runs), write the results."""
    app = typer.Typer(add_completion=False, help=help)
    parts_help = f"Which parts to run (repeat): {', '.join(experiment.parts)}."

    @app.command(help=command_help)
    def main(
        quick: Annotated[bool, typer.Option("--quick", help=quick_help)] = False,
        smoke: Annotated[bool, typer.Option("--smoke", help="A seconds-long pass through every part (what the tests run).")] = False,
        dataset: Annotated[Optional[str], typer.Option(
            help="digits (default for --quick/--smoke), cifar10 (default otherwise), mnist, fashion-mnist, ...")] = None,
        data_root: Annotated[Optional[Path], typer.Option(help="Folder holding on-disk datasets (see docs/data.md).")] = None,
        arch: Annotated[Optional[str], typer.Option(help=arch_help)] = None,
        epochs: Annotated[Optional[int], typer.Option(min=epochs_min, help=epochs_help)] = None,
        parts: Annotated[list[str], typer.Option("--part", help=parts_help)] = list(experiment.parts),
        out: Annotated[Optional[Path], typer.Option(help=f"Output folder (default runs/{experiment.script}/SCALE-DATASET).")] = None,
        device: Annotated[str, typer.Option(help="Torch device, e.g. cpu or cuda (default: cuda when available).")] = default_device(),
        seed: Annotated[int, typer.Option(help="Seed of every run's data and training (default folder gets -seedN).")] = 0,
    ) -> None:  # fmt: skip
        with script_errors():
            inv = Invocation.resolve(experiment.script, quick=quick, smoke=smoke, dataset=dataset, parts=parts,
                                     known=experiment.parts, out=out, device=device, seed=seed)  # fmt: skip
            p = inv.protocol(experiment.make_protocol(inv.scale, inv.dataset, arch, epochs))
            runs, done = Sweep(inv.out, device=device, data_root=data_root).run_groups(experiment.plan(p, inv.parts))
            results, md = experiment.summarize(p, runs, inv.out)
            md_path = inv.finish(experiment.title, p, done, results, md, experiment.settings(p))[1]
        typer.echo(f"wrote {md_path} and {md_path.with_suffix('.json')}")

    return app
