"""The command line and the results files every experiment script shares.

A script declares an :class:`Experiment`: its parts, a protocol per scale, a plan (the runs of each part)
and a summary (numbers, figures, markdown). :func:`experiment_app` turns that into a Typer command with the
options every script takes (``--quick``/``--smoke``, ``--dataset``, ``--data-root``, ``--arch``, ``--epochs``,
``--part``, ``--out``, ``--device``, ``--seed``, and the executor's: ``--executor local|ray``, ``--address``,
``--cpus-per-run``, ``--gpus-per-run``, ``--max-retries``, ``--ray-cpus``), trains the plan with a
:class:`~stability.sweeps.runs.Sweep` and writes ``results.json`` and ``results.md`` atomically.
"""

import dataclasses
import enum
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from stability.commands import OneLineCommand
from stability.data.sources import DATASETS
from stability.data.spec import DataSpec
from stability.errors import BadInputError, StabilityError
from stability.files import check_output_path
from stability.serialize import to_json
from stability.sweeps.executors import Executor, LocalExecutor, RayExecutor, SweepFailed
from stability.sweeps.results import protocol_section, write_results
from stability.sweeps.runs import RunResult, RunSpec, Sweep
from stability.training.spec import TrainSpec


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
        known: Sequence[str], out: str | Path | None, device: str, seed: int = 0,
    ) -> "Invocation":  # fmt: skip
        """Defaults: digits for ``--quick``/``--smoke``, CIFAR-10 at full scale; ``runs/SCRIPT/SCALE-DATASET``."""
        if seed < 0:
            raise BadInputError(f"--seed must be non-negative, got {seed}")
        scale = pick_scale(quick, smoke)
        dataset = dataset if dataset is not None else ("cifar10" if scale == "full" else "digits")
        bad = sorted(set(parts) - set(known))
        if bad:
            raise BadInputError(f"unknown part(s) {', '.join(bad)}; choose from {', '.join(known)}")
        if dataset not in DATASETS:
            raise BadInputError(f"--dataset {dataset!r} is not one of: {', '.join(DATASETS)}")
        chosen = tuple(x for x in known if x in parts)
        out = check_output_path(out, "--out", folder=True) if out is not None else default_out(script, scale, dataset, seed)
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
                   "protocol": to_json(protocol), "wall_seconds": wall, **results}  # fmt: skip
        return write_results(self.out, payload, head + markdown)


class ExecutorName(str, enum.Enum):
    local = "local"
    ray = "ray"


@dataclass(frozen=True)
class ExecutorOptions:
    """The executor options of the command line (see :class:`~stability.sweeps.executors.RayExecutor`)."""

    executor: ExecutorName = ExecutorName.local
    address: Optional[str] = None
    cpus_per_run: float = 1.0
    gpus_per_run: float = 0.0
    max_retries: int = 3
    ray_cpus: Optional[int] = None

    def build(self) -> Executor:
        """The executor; Ray options given with ``--executor local`` are refused, not ignored."""
        if self.executor is ExecutorName.local:
            given = [f"--{f.name.replace('_', '-')}" for f in dataclasses.fields(self)
                     if f.name != "executor" and getattr(self, f.name) != f.default]  # fmt: skip
            if given:
                raise BadInputError(f"{', '.join(given)} set(s) the Ray executor; add --executor ray or drop it")
            return LocalExecutor()
        return RayExecutor(
            address=self.address, cpus_per_run=self.cpus_per_run, gpus_per_run=self.gpus_per_run,
            max_retries=self.max_retries, num_cpus=self.ray_cpus,
        )  # fmt: skip


def resolve_device(executor: Executor, device: Optional[str]) -> str:
    """``device``, checked against what the executor's runs will have; the executor's default if ``None``."""
    device = device or executor.default_device()
    executor.check_device(device)
    return device


@contextmanager
def script_errors() -> Iterator[None]:
    """Bad input inside an experiment script: one line on stderr and exit code 2, as the ``stability`` CLI.
    Runs that failed (reported as they failed, the rest of the sweep finished): one line, exit code 2 if
    each failure is bad input, else 1."""
    try:
        yield
    except SweepFailed as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2 if exc.bad_input else 1) from None
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

    @app.command(help=command_help, cls=OneLineCommand)
    def main(
        quick: Annotated[bool, typer.Option("--quick", help=quick_help)] = False,
        smoke: Annotated[bool, typer.Option("--smoke", help="A seconds-long pass through every part (what the tests run).")] = False,
        dataset: Annotated[Optional[str], typer.Option(
            help="digits (default for --quick/--smoke), cifar10 (default otherwise), mnist, fashion-mnist, ...")] = None,
        data_root: Annotated[Optional[Path], typer.Option(help="Folder holding on-disk datasets (see docs/data.md).")] = None,
        arch: Annotated[Optional[str], typer.Option(help=arch_help)] = None,
        epochs: Annotated[Optional[int], typer.Option(min=epochs_min, help=epochs_help)] = None,
        parts: Annotated[list[str], typer.Option("--part", help=parts_help)] = list(experiment.parts),
        out: Annotated[Optional[str], typer.Option(help=f"Output folder (default runs/{experiment.script}/SCALE-DATASET).")] = None,
        device: Annotated[Optional[str], typer.Option(
            help="Torch device, e.g. cpu or cuda (default: cuda when available; under Ray, cuda with --gpus-per-run).")] = None,
        seed: Annotated[int, typer.Option(help="Seed of every run's data and training (default folder gets -seedN).")] = 0,
        executor: Annotated[ExecutorName, typer.Option(
            help="Where runs train: local (one after another, here) or ray (tasks on a Ray cluster; needs the ray extra, see docs/scaling.md).")] = ExecutorName.local,
        address: Annotated[Optional[str], typer.Option(
            help="Ray cluster to join: auto (started by `ray start` on this node) or HOST:PORT (default: start a local one).")] = None,
        cpus_per_run: Annotated[float, typer.Option(help="Ray: CPUs each run asks for (and its torch threads).")] = 1.0,
        gpus_per_run: Annotated[float, typer.Option(help="Ray: GPUs each run asks for; 0.5 puts two runs on a GPU.")] = 0.0,
        max_retries: Annotated[int, typer.Option(help="Ray: new attempts after a worker dies; each resumes from the last checkpoint.")] = 3,
        ray_cpus: Annotated[Optional[int], typer.Option(help="Ray: CPUs of the local cluster started without --address (default: all).")] = None,
    ) -> None:  # fmt: skip
        with script_errors():
            run_on = ExecutorOptions(executor, address, cpus_per_run, gpus_per_run, max_retries, ray_cpus).build()
            device = resolve_device(run_on, device)
            inv = Invocation.resolve(experiment.script, quick=quick, smoke=smoke, dataset=dataset, parts=parts,
                                     known=experiment.parts, out=out, device=device, seed=seed)  # fmt: skip
            p = inv.protocol(experiment.make_protocol(inv.scale, inv.dataset, arch, epochs))
            sweep = Sweep(inv.out, device=device, data_root=data_root, executor=run_on)
            runs, done = sweep.run_groups(experiment.plan(p, inv.parts))
            results, md = experiment.summarize(p, runs, inv.out)
            md_path = inv.finish(experiment.title, p, done, results, md, experiment.settings(p))[1]
        typer.echo(f"wrote {md_path} and {md_path.with_suffix('.json')}")

    return app
