"""Badger (2022): memorization can be forced by gradient splitting, but it is slow; noise makes it easier.

Four parts, all trained with the author's bounded loss (softmax, then cross-entropy) and Adam:

- ``splitting``: gradient splitting (descend on the training loss, ascend on a held-out sample's, paused
  while held-out accuracy is below chance) against plain training: train, anti-trained (held-out) and
  untouched test accuracy over epochs.
- ``switching``: the objective switched mid-run, plain -> splitting and splitting -> plain.
- ``noise``: inputs mixed with noise, ``x' = phi x + (1 - phi) eps``, phi in {1, 0.5, 0.2, 0.1, 0.05, 0.02,
  0.01, 0}; how fast splitting memorizes as phi falls.
- ``size``: a geometric grid of training-set sizes, natural (phi = 1) against random (phi = 0) inputs;
  the train-test gap against n.

    python experiments/memorize.py --quick                  # digits, MLP 1x512, about 2 minutes on 2 CPUs
    python experiments/memorize.py --data-root ~/data       # CIFAR-10, Badger's ConvNet, on a GPU

Writes ``OUT/runs/NAME/`` (checkpoints ``stability analyze`` reads), ``OUT/figures/*.png``,
``OUT/results.json`` and ``OUT/results.md``. Rerunning skips finished runs and resumes interrupted ones.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from stability.data.spec import DataSpec
from stability.models.spec import ModelSpec
from stability.plotting import Panel, curves
from stability.sweeps.command import Experiment, experiment_app
from stability.sweeps.results import describe_training, markdown_table
from stability.sweeps.runs import RunResult, RunSpec, first_epoch, run_name
from stability.training.spec import TrainSpec

PARTS = ("splitting", "switching", "noise", "size")
PHIS = (1.0, 0.5, 0.2, 0.1, 0.05, 0.02, 0.01, 0.0)
ACCURACIES = {"train": "train_acc", "anti-trained (held-out)": "heldout_acc", "untouched (test)": "test_acc"}
# Badger 2022, CIFAR-10, ConvNet, Adam 1e-4, batch 512 (the author's recorded runs, as in docs/experiments.md).
PAPER = {
    "split_5000_epochs": {"train": 0.94, "heldout": 0.001, "test": 0.29},
    "plain_5000_epochs": {"train": 0.96, "heldout": None, "test": 0.56},
    "train_acc_after_200_split_epochs": {1.0: 0.32, 0.0: 0.75},
}


@dataclass(frozen=True)
class Protocol:
    data: DataSpec
    model: ModelSpec
    training: TrainSpec
    sizes: tuple[int, ...]
    phis: tuple[float, ...] = PHIS
    memorized: float = 0.9  # training accuracy that counts as "memorized" in the noise sweep


def protocol(scale: str, dataset: str, arch: str | None) -> Protocol:
    split = dict(loss="bounded-cross-entropy", objective="split", optimizer="adam")
    if scale == "smoke":
        return Protocol(
            DataSpec(dataset=dataset, n_train=60, n_heldout=60, n_test=60),
            ModelSpec(arch or "mlp", {"widths": [32]} if arch in (None, "mlp") else {}),
            TrainSpec(lr=1e-3, batch_size=30, epochs=4, checkpoint_every=2, **split),
            sizes=(30, 60), phis=(1.0, 0.0),
        )  # fmt: skip
    if scale == "quick":
        return Protocol(
            DataSpec(dataset=dataset, n_train=500, n_heldout=500),
            ModelSpec(arch or "mlp"),
            TrainSpec(lr=1e-3, batch_size=100, epochs=300, checkpoint_every=50, **split),
            sizes=(50, 100, 200, 400, 700),
        )
    return Protocol(
        DataSpec(dataset=dataset, n_train=10000, n_heldout=10000),
        ModelSpec(arch or "convnet"),
        TrainSpec(lr=1e-4, batch_size=512, epochs=200, checkpoint_every=10, **split),
        sizes=(2000, 5000, 10000, 20000),
    )


def with_data(p: Protocol, **changes) -> DataSpec:
    return dataclasses.replace(p.data, **changes)


def noisy(p: Protocol, phi: float, n: int | None = None) -> DataSpec:
    n = n or p.data.n_train
    return with_data(p, noise_fraction=round(1.0 - phi, 12), n_train=n, n_heldout=n)


def plan(p: Protocol, parts: tuple[str, ...]) -> dict[str, list[RunSpec]]:
    t, half = p.training, p.training.epochs // 2
    groups: dict[str, list[RunSpec]] = {}
    if "splitting" in parts:
        groups["splitting"] = [
            RunSpec(run_name(objective="split"), p.model, p.data, t, labels={"run": "gradient splitting"}),
            RunSpec(run_name(objective="plain"), p.model, p.data, dataclasses.replace(t, objective="standard"),
                    labels={"run": "plain training"}),
        ]  # fmt: skip
    if "switching" in parts:
        groups["switching"] = [
            RunSpec(run_name(objective="plain-then-split", at=half), p.model, p.data,
                    dataclasses.replace(t, split_start=half), labels={"run": f"plain, splitting from epoch {half}"}),
            RunSpec(run_name(objective="split-then-plain", at=half), p.model, p.data,
                    dataclasses.replace(t, split_stop=half), labels={"run": f"splitting, plain from epoch {half}"}),
        ]  # fmt: skip
    if "noise" in parts:
        groups["noise"] = [
            RunSpec(run_name(objective="split", phi=phi), p.model, noisy(p, phi), t, labels={"phi": phi})
            for phi in p.phis
        ]
    if "size" in parts:
        groups["size"] = [
            RunSpec(run_name(objective="split", inputs=kind, n=n), p.model, noisy(p, phi, n), t,
                    labels={"inputs": kind, "n": n})
            for kind, phi in (("natural", 1.0), ("random", 0.0)) for n in p.sizes
        ]  # fmt: skip
    return groups


def summarize(p: Protocol, groups: dict[str, list[RunResult]], out: Path) -> tuple[dict, str]:
    results: dict = {}
    md = ""
    figures = out / "figures"
    chance = 1.0 / next(iter(groups.values()))[0].num_classes
    on_cifar10 = p.data.dataset == "cifar10"
    if "splitting" in groups:
        runs = {r.spec.labels["run"]: r for r in groups["splitting"]}
        results["splitting"] = {
            name: {**_final(r), "split_epochs": _split_epochs(r), "first_epoch_heldout_below_chance":
                   first_epoch(r.history, "heldout_acc", chance, below=True),
                   "first_epoch_memorized": first_epoch(r.history, "train_acc", p.memorized)}
            for name, r in runs.items()
        }  # fmt: skip
        fig = curves([_accuracy_panel(r, name, chance) for name, r in runs.items()], figures / "splitting.png",
                     title=f"gradient splitting vs plain training ({p.data.dataset})")  # fmt: skip
        md += f"## Gradient splitting vs plain training\n\n![splitting]({fig.relative_to(out)})\n\n"
        header = ["run", "train acc", "anti-trained (held-out) acc", "untouched (test) acc", "epochs splitting",
                  f"first epoch at train acc {p.memorized}"]  # fmt: skip
        rows = [[n, v["train_acc"], v["heldout_acc"], v["test_acc"], v["split_epochs"], v["first_epoch_memorized"]]
                for n, v in results["splitting"].items()]  # fmt: skip
        if on_cifar10:
            s, q = PAPER["split_5000_epochs"], PAPER["plain_5000_epochs"]
            rows += [["paper, splitting, 5,000 epochs", s["train"], s["heldout"], s["test"], None, None],
                     ["paper, plain, 5,000 epochs", q["train"], q["heldout"], q["test"], None, None]]  # fmt: skip
        md += markdown_table(header, rows) + "\n"
    if "switching" in groups:
        half = p.training.epochs // 2
        results["switching"] = {
            r.spec.labels["run"]: {"at_switch": _final(r, upto=half), "final": _final(r)} for r in groups["switching"]
        }
        fig = curves([_accuracy_panel(r, r.spec.labels["run"], chance) for r in groups["switching"]],
                     figures / "switching.png", title=f"objective switched at epoch {half}")  # fmt: skip
        md += f"## Switching objectives mid-run\n\n![switching]({fig.relative_to(out)})\n\n"
        md += markdown_table(
            ["run", "when", "train acc", "held-out acc", "test acc"],
            [[name, when, v[when]["train_acc"], v[when]["heldout_acc"], v[when]["test_acc"]]
             for name, v in results["switching"].items() for when in ("at_switch", "final")],
        ) + "\n"  # fmt: skip
    if "noise" in groups:
        rows = []
        for r in groups["noise"]:
            rows.append({"phi": r.spec.labels["phi"], **_final(r), "split_epochs": _split_epochs(r),
                         "first_epoch_memorized": first_epoch(r.history, "train_acc", p.memorized)})  # fmt: skip
        results["noise"] = rows
        fig = curves([
            Panel({f"phi={r.spec.labels['phi']:g}": r.series("train_acc") for r in groups["noise"]},
                  title="train accuracy under splitting", ylabel="accuracy"),
            Panel({"train": ([x["phi"] for x in rows], [x["train_acc"] for x in rows]),
                   "held-out": ([x["phi"] for x in rows], [x["heldout_acc"] for x in rows]),
                   "test": ([x["phi"] for x in rows], [x["test_acc"] for x in rows])},
                  hlines={"chance": chance}, title=f"after {p.training.epochs} epochs", xlabel="phi (1 = clean)",
                  ylabel="accuracy", marker="o"),
        ], figures / "noise.png", title="noise mixing: x' = phi x + (1 - phi) eps")  # fmt: skip
        md += f"## Noise sweep\n\n![noise]({fig.relative_to(out)})\n\n"
        md += f"'memorized at' = first epoch with training accuracy >= {p.memorized}.\n\n"
        header = ["phi", "train acc", "held-out acc", "test acc", "memorized at epoch", "epochs splitting"]
        if on_cifar10:
            header.append("paper train acc, 200 epochs")
        md += markdown_table(header, [
            [x["phi"], x["train_acc"], x["heldout_acc"], x["test_acc"], x["first_epoch_memorized"], x["split_epochs"]]
            + ([PAPER["train_acc_after_200_split_epochs"].get(x["phi"])] if on_cifar10 else []) for x in rows
        ]) + "\n"  # fmt: skip
    if "size" in groups:
        rows = [{"inputs": r.spec.labels["inputs"], "n": r.spec.labels["n"], **_final(r),
                 "gap": r.final["train_acc"] - r.final["test_acc"]} for r in groups["size"]]  # fmt: skip
        results["size"] = rows
        series = {kind: ([x["n"] for x in rows if x["inputs"] == kind], [x["gap"] for x in rows if x["inputs"] == kind])
                  for kind in ("natural", "random")}  # fmt: skip
        fig = curves([Panel(series, title="train - test accuracy under splitting", xlabel="training samples n",
                            ylabel="gap", logx=True, marker="o")], figures / "size.png")  # fmt: skip
        md += f"## Dataset size\n\n![size]({fig.relative_to(out)})\n\n"
        md += markdown_table(["inputs", "n", "train acc", "held-out acc", "test acc", "gap"],
                             [[x["inputs"], x["n"], x["train_acc"], x["heldout_acc"], x["test_acc"], x["gap"]]
                              for x in rows]) + "\n"  # fmt: skip
    return results, md


def _final(r: RunResult, upto: int | None = None) -> dict:
    row = r.history[-1] if upto is None else r.history[upto]
    return {k: row.get(k) for k in ("epoch", "train_acc", "heldout_acc", "test_acc")}


def _split_epochs(r: RunResult) -> int:
    return int(sum(row.get("split_active") or 0 for row in r.history))


def _accuracy_panel(r: RunResult, title: str, chance: float) -> Panel:
    return Panel({label: r.series(key) for label, key in ACCURACIES.items()}, title=title, ylabel="accuracy",
                 hlines={"chance": chance})  # fmt: skip



EXPERIMENT = Experiment(
    "memorize", "Memorization by gradient splitting (Badger 2022)", PARTS, protocol, plan, summarize,
    settings=lambda p: {"model": f"{p.model.arch} {p.model.kwargs}", "training": describe_training(p.training),
                        "train / held-out samples": f"{p.data.n_train} / {p.data.n_heldout}"},
)
app = experiment_app(
    EXPERIMENT, help=__doc__.split("\n\n")[0],
    command_help="Run gradient splitting, objective switching, the noise sweep and the dataset-size sweep.",
    quick_help="Digits on a CPU in minutes: MLP 1x512, Adam 1e-3, 300 epochs.",
    arch_help="Architecture (default: mlp for --quick, convnet at full scale).",
    epochs_help="Override the scale's epochs per run (Badger: 5000).", epochs_min=2,
)

if __name__ == "__main__":
    app()
