"""Zhang et al. (2017): the same network, unchanged, fits labels and inputs that carry no signal.

Three parts, each a grid of runs with architecture and hyperparameters fixed:

- ``tests``: the six randomization tests (true labels, partially corrupted labels, random labels,
  shuffled pixels, random pixels, Gaussian inputs); learning curves against steps (their Figure 1a).
- ``corruption``: label corruption p in {0, 0.2, ..., 1}; steps to fit relative to true labels
  (Figure 1b) and test error against p (Figure 1c).
- ``regularization``: augmentation, weight decay and dropout off and on, true and random labels
  (the shape of their Table 1); next to the paper's CIFAR-10 numbers when the run is on CIFAR-10.

    python experiments/randomization.py --quick            # digits, MLP 1x512, about 2 minutes on 2 CPUs
    python experiments/randomization.py --dataset cifar10 --data-root ~/data   # the paper's protocol, GPU

Writes ``OUT/runs/NAME/`` (checkpoints ``stability analyze`` reads), ``OUT/figures/*.png``,
``OUT/results.json`` and ``OUT/results.md``. Rerunning skips finished runs and resumes interrupted ones.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from stability.data.spec import DataSpec
from stability.models.registry import accepted_kwargs
from stability.models.spec import ModelSpec
from stability.plotting import Panel, curves
from stability.sweeps.command import Experiment, experiment_app
from stability.sweeps.results import describe_training, markdown_table
from stability.sweeps.runs import RunResult, RunSpec, first_epoch, run_name
from stability.training.spec import TrainSpec

TESTS = ("true", "partial-labels", "random-labels", "shuffled-pixels", "random-pixels", "gaussian")
PARTS = ("tests", "corruption", "regularization")
# Zhang et al. 2017, Table 1, CIFAR-10 (train %, test %), keyed by (arch, regularizers, labels).
# The random-label rows are our reading of which regularizer settings the table pairs them with.
PAPER_CIFAR10 = {
    ("small-inception", "augment+weight-decay", "true"): (100.0, 89.05),
    ("small-inception", "none", "true"): (100.0, 85.75),
    ("small-inception", "none", "random-labels"): (100.0, 9.78),
    ("mlp", "none", "true"): (100.0, 50.51),
    ("mlp", "none", "random-labels"): (99.34, 10.61),
}


@dataclass(frozen=True)
class Protocol:
    """Everything a scale fixes: the data, the network, the optimizer, the grids."""

    data: DataSpec
    model: ModelSpec
    training: TrainSpec
    partial_p: float = 0.5
    ps: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    weight_decay: float = 5e-4
    dropout: float = 0.5
    fit_level: float = 0.99


def protocol(scale: str, dataset: str, arch: str | None) -> Protocol:
    if scale == "smoke":
        return Protocol(
            DataSpec(dataset=dataset, n_train=100, n_test=100),
            ModelSpec(arch or "mlp", {"widths": [32]} if arch in (None, "mlp") else {}),
            TrainSpec(optimizer="sgd", lr=0.05, batch_size=50, epochs=2, checkpoint_every=1),
            ps=(0.0, 0.5, 1.0), fit_level=0.5,
        )  # fmt: skip
    if scale == "quick":
        # Zhang's MLP settings but lr 0.05 and no decay: digits give 23 steps per epoch, not 390.
        return Protocol(
            DataSpec(dataset=dataset),
            ModelSpec(arch or "mlp"),
            TrainSpec(optimizer="sgd", lr=0.05, momentum=0.9, batch_size=64, epochs=150, checkpoint_every=25),
        )
    arch = arch or "small-inception"
    return Protocol(
        DataSpec(dataset=dataset, center_crop=28 if dataset.startswith("cifar") else None, preprocess="whiten"),
        ModelSpec(arch),
        TrainSpec(optimizer="sgd", lr=0.1 if arch == "small-inception" else 0.01, momentum=0.9, lr_decay=0.95,
                  batch_size=128, epochs=100, checkpoint_every=5),
    )  # fmt: skip


def regularizers(p: Protocol) -> dict[str, tuple[TrainSpec, ModelSpec]]:
    """Each explicit regularizer alone, all together, and none; dropout only where the architecture has it."""
    has_dropout = "dropout" in accepted_kwargs(p.model.arch)
    # Zhang et al.'s augmentation is random crops alone; flipping a digit can change its class.
    crop = {"augment": True, "augment_flip": False}
    settings = {"none": {}, "augment": crop, "weight-decay": {"weight_decay": p.weight_decay}}
    if has_dropout:
        settings["dropout"] = {"dropout": p.dropout}
    settings["augment+weight-decay"] = {**crop, "weight_decay": p.weight_decay}
    if has_dropout:
        settings["all"] = {**crop, "weight_decay": p.weight_decay, "dropout": p.dropout}
    out = {}
    for name, s in settings.items():
        model = p.model
        if "dropout" in s:
            model = ModelSpec(p.model.arch, {**p.model.kwargs, "dropout": s["dropout"]})
        training = dataclasses.replace(p.training, **{k: v for k, v in s.items() if k != "dropout"})
        out[name] = (training, model)
    return out


def corrupted(p: Protocol, test: str, prob: float = 0.0) -> DataSpec:
    return dataclasses.replace(p.data, corruption=test, corruption_prob=prob if test == "partial-labels" else 0.0)


def label_spec(p: Protocol, prob: float) -> DataSpec:
    """p = 0 and p = 1 are the true- and random-label runs themselves (shared, not retrained)."""
    if prob == 0.0:
        return corrupted(p, "true")
    if prob == 1.0:
        return corrupted(p, "random-labels")
    return corrupted(p, "partial-labels", prob)


def name_of(data: DataSpec, reg: str = "none") -> str:
    settings = {"data": data.corruption}
    if data.corruption == "partial-labels":
        settings["p"] = data.corruption_prob
    if reg != "none":
        settings["reg"] = reg
    return run_name(**settings)


def plan(p: Protocol, parts: tuple[str, ...]) -> dict[str, list[RunSpec]]:
    """The runs of each part; a run that serves several parts (true labels, p = 0, no regularizer) is one name."""

    def run(data: DataSpec, training: TrainSpec = p.training, model: ModelSpec = p.model, reg: str = "none") -> RunSpec:
        return RunSpec(name_of(data, reg), model, data, training, labels={"reg": reg})

    groups: dict[str, list[RunSpec]] = {}
    if "tests" in parts:
        groups["tests"] = [run(corrupted(p, test, p.partial_p)) for test in TESTS]
    if "corruption" in parts:
        groups["corruption"] = [run(label_spec(p, prob)) for prob in p.ps]
    if "regularization" in parts:
        groups["regularization"] = [
            run(corrupted(p, labels), training, model, reg)
            for reg, (training, model) in regularizers(p).items() for labels in ("true", "random-labels")
        ]  # fmt: skip
    return groups


def summarize(p: Protocol, groups: dict[str, list[RunResult]], out: Path) -> tuple[dict, str]:
    runs = {r.spec.name: r for part in groups.values() for r in part}
    results: dict = {}
    md = ""
    steps_true = first_epoch(runs[name_of(corrupted(p, "true"))].history, "train_acc", p.fit_level, at="step")
    if "tests" in groups:
        rows = []
        by_step = {test: runs[name_of(corrupted(p, test, p.partial_p))] for test in TESTS}
        for test, r in by_step.items():
            steps = first_epoch(r.history, "train_acc", p.fit_level, at="step")
            rows.append({
                "test": test, "train_acc": r.final["train_acc"], "test_acc": r.final["test_acc"],
                "final_train_loss": r.final["train_loss"], "steps_to_fit": steps,
                "slowdown": steps / steps_true if steps and steps_true else None,
            })  # fmt: skip
        results["tests"] = rows
        fig = curves([
            Panel({t: by_step[t].series("train_loss", x="step") for t in TESTS},
                  title="training loss", xlabel="step", ylabel="loss", logy=True),
            Panel({t: by_step[t].series("train_acc", x="step") for t in TESTS},
                  title="training accuracy", xlabel="step", ylabel="accuracy"),
        ], out / "figures" / "learning_curves.png", title=f"randomization tests ({p.data.dataset}, {p.model.arch})")  # fmt: skip
        md += f"## Randomization tests (Figure 1a)\n\n![learning curves]({fig.relative_to(out)})\n\n"
        md += f"Steps to fit = first step with training accuracy >= {p.fit_level}; partial labels use p = {p.partial_p}.\n\n"
        md += markdown_table(
            ["test", "train acc", "test acc", "final train loss", "steps to fit", "x true labels"],
            [[r["test"], r["train_acc"], r["test_acc"], r["final_train_loss"], r["steps_to_fit"], r["slowdown"]] for r in rows],
        )  # fmt: skip
    if "corruption" in groups:
        rows = []
        for prob in p.ps:
            r = runs[name_of(label_spec(p, prob))]
            steps = first_epoch(r.history, "train_acc", p.fit_level, at="step")
            rows.append({
                "p": prob, "steps_to_fit": steps, "slowdown": steps / steps_true if steps and steps_true else None,
                "train_acc": r.final["train_acc"], "test_error": 1 - r.final["test_acc"],
            })  # fmt: skip
        results["corruption"] = rows
        fitted = [r for r in rows if r["slowdown"] is not None]
        fig = curves([
            Panel({"steps to fit / true labels": ([r["p"] for r in fitted], [r["slowdown"] for r in fitted])},
                  title="convergence slowdown (Fig. 1b)", xlabel="label corruption p", ylabel="relative steps", marker="o"),
            Panel({"test error": ([r["p"] for r in rows], [r["test_error"] for r in rows])},
                  hlines={"chance": 1 - 1 / next(iter(runs.values())).num_classes}, title="test error (Fig. 1c)", xlabel="label corruption p",
                  ylabel="error", marker="o"),
        ], out / "figures" / "label_corruption.png")  # fmt: skip
        md += f"## Label corruption (Figures 1b, 1c)\n\n![label corruption]({fig.relative_to(out)})\n\n"
        md += markdown_table(
            ["p", "steps to fit", "x true labels", "final train acc", "test error"],
            [[r["p"], r["steps_to_fit"], r["slowdown"], r["train_acc"], r["test_error"]] for r in rows],
        )  # fmt: skip
    if "regularization" in groups:
        rows = []
        on_cifar10 = p.data.dataset == "cifar10"
        for reg in regularizers(p):
            for labels in ("true", "random-labels"):
                r = runs[name_of(corrupted(p, labels), reg)]
                paper = PAPER_CIFAR10.get((p.model.arch, reg, labels)) if on_cifar10 else None
                rows.append({
                    "regularizers": reg, "labels": labels, "train_acc": r.final["train_acc"],
                    "test_acc": r.final["test_acc"], "paper_train_pct": paper[0] if paper else None,
                    "paper_test_pct": paper[1] if paper else None,
                })  # fmt: skip
        results["regularization"] = rows
        md += "## Explicit regularization (the shape of Table 1)\n\n"
        header = ["regularizers", "labels", "train acc", "test acc"]
        cells = [[r["regularizers"], r["labels"], r["train_acc"], r["test_acc"]] for r in rows]
        if on_cifar10:
            header += ["paper train %", "paper test %"]
            cells = [c + [r["paper_train_pct"], r["paper_test_pct"]] for c, r in zip(cells, rows)]
        md += markdown_table(header, cells)
        if on_cifar10:
            md += "\nPaper: Zhang et al. 2017, Table 1 (CIFAR-10); — where the table has no matching row.\n"
    return results, md



EXPERIMENT = Experiment(
    "randomization", "Randomization tests (Zhang et al. 2017)", PARTS, protocol, plan, summarize,
    settings=lambda p: {"model": f"{p.model.arch} {p.model.kwargs}", "training": describe_training(p.training)},
)
app = experiment_app(
    EXPERIMENT, help=__doc__.split("\n\n")[0],
    command_help="Run the randomization tests, the label-corruption sweep and the regularization table.",
    quick_help="Digits on a CPU in minutes: MLP 1x512, SGD lr 0.05, 150 epochs.",
    arch_help="Architecture (default: mlp for --quick, small-inception at full scale).",
    epochs_help="Override the scale's epochs per run.",
)

if __name__ == "__main__":
    app()
