"""The theory on real training runs: sharpness against 2/eta, curvature and input sensitivity over training.

Every run carries a tracker that, every few epochs, measures on the fixed training set the Hessian's top
eigenvalue (Lanczos, warm-started), its trace (Hutchinson) and the mean input-Jacobian Frobenius norm of
the logits on the training and the test set. Three parts:

- ``edge``: full-batch gradient descent with MSE at several step sizes, true labels: progressive
  sharpening, and the edge of stability where sharpness stops at 2/eta (Cohen et al. 2021).
- ``labels``: the same gradient descent at one step size on true and on random labels: does the
  memorizing run end at a sharper, more input-sensitive point?
- ``splitting``: Badger's gradient splitting against plain training and random labels (Adam and the
  bounded loss, as in ``memorize.py``); curvature of the bounded training loss.

    python experiments/stability_tracking.py --quick       # digits, tanh MLP, about 3 minutes on 2 CPUs

Writes ``OUT/runs/NAME/`` (with ``tracking.jsonl`` beside ``metrics.jsonl``), ``OUT/figures/*.png``,
``OUT/results.json`` and ``OUT/results.md``. Rerunning skips finished runs and resumes interrupted ones.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from stability.data.bundle import DataBundle
from stability.data.spec import DataSpec
from stability.dynamics.tracking import StabilityTracker
from stability.models.spec import ModelSpec
from stability.plotting import Panel, curves
from stability.sensitivity.jacobian import jacobian_frobenius
from stability.sweeps.command import Experiment, experiment_app
from stability.sweeps.results import describe_training, markdown_table
from stability.sweeps.runs import RunResult, RunSpec, first_epoch, run_name
from stability.training.spec import TrainSpec

PARTS = ("edge", "labels", "splitting")


@dataclass(frozen=True)
class Protocol:
    data: DataSpec
    model: ModelSpec
    gd: TrainSpec  # the edge and labels parts; lr is replaced by each of lrs
    lrs: tuple[float, ...]
    label_lr: float
    adam: TrainSpec  # the splitting part
    n_heldout: int
    track_every: int
    trace_samples: int = 10
    subset: int | None = None  # samples the curvature is measured on (None: the whole training set)


def protocol(scale: str, dataset: str, arch: str | None) -> Protocol:
    gd = dict(loss="mse", optimizer="sgd", momentum=0.0, batch_size=0)
    adam = dict(loss="bounded-cross-entropy", optimizer="adam", lr=1e-3)
    if scale == "smoke":
        return Protocol(
            DataSpec(dataset=dataset, n_train=60, n_test=60), ModelSpec(arch or "mlp", {"widths": [16], "activation": "tanh"}),
            TrainSpec(epochs=4, checkpoint_every=2, **gd), lrs=(0.02, 0.04), label_lr=0.04,
            adam=TrainSpec(batch_size=30, epochs=4, checkpoint_every=2, **adam), n_heldout=60, track_every=2,
            trace_samples=2,
        )  # fmt: skip
    if scale == "quick":
        return Protocol(
            DataSpec(dataset=dataset, n_train=500), ModelSpec(arch or "mlp", {"widths": [256], "activation": "tanh"}),
            TrainSpec(epochs=2000, checkpoint_every=250, **gd), lrs=(0.01, 0.02, 0.04, 0.06), label_lr=0.04,
            adam=TrainSpec(batch_size=100, epochs=300, checkpoint_every=50, **adam), n_heldout=500, track_every=50,
        )  # fmt: skip
    return Protocol(
        DataSpec(dataset=dataset, n_train=5000), ModelSpec(arch or "mlp", {"widths": [200, 200], "activation": "tanh"}),
        TrainSpec(epochs=5000, checkpoint_every=250, **gd), lrs=(0.01, 0.02, 0.04), label_lr=0.02,
        adam=TrainSpec(batch_size=512, epochs=500, checkpoint_every=50, **adam), n_heldout=5000, track_every=50,
        subset=2000,
    )  # fmt: skip


def tracker(p: Protocol, training: TrainSpec):
    """The run's tracker: curvature of its own training loss, and input Jacobians on train and test."""

    def make(data: DataBundle) -> StabilityTracker:
        test_x = data.test.x

        def jacobian(model, x, y) -> dict[str, float]:
            return {"train": float(jacobian_frobenius(model, x).mean()),
                    "test": float(jacobian_frobenius(model, test_x).mean())}  # fmt: skip

        return StabilityTracker(
            data.train.x, data.train.y, loss=training.loss, subset=p.subset, lr=training.lr,
            num_probes=p.trace_samples, measures={"jacobian": jacobian},
        )  # fmt: skip

    return make


def plan(p: Protocol, parts: tuple[str, ...]) -> dict[str, list[RunSpec]]:
    def run(name: str, data: DataSpec, training: TrainSpec, **labels) -> RunSpec:
        return RunSpec(name, p.model, data, training, labels=labels, track=tracker(p, training), track_every=p.track_every)

    def gd(lr: float) -> TrainSpec:
        return dataclasses.replace(p.gd, lr=lr)

    random = dataclasses.replace(p.data, corruption="random-labels")
    groups: dict[str, list[RunSpec]] = {}
    if "edge" in parts:
        groups["edge"] = [run(run_name(opt="gd", labels="true", lr=lr), p.data, gd(lr), lr=lr) for lr in p.lrs]
    if "labels" in parts:
        groups["labels"] = [
            run(run_name(opt="gd", labels=kind, lr=p.label_lr), data, gd(p.label_lr), run=f"{kind} labels")
            for kind, data in (("true", p.data), ("random", random))
        ]  # fmt: skip
    if "splitting" in parts:
        held = dataclasses.replace(p.data, n_heldout=p.n_heldout)
        adam = p.adam
        groups["splitting"] = [
            run(run_name(opt="adam", labels="true"), held, adam, run="plain, true labels"),
            run(run_name(opt="adam", labels="random"), dataclasses.replace(held, corruption="random-labels"), adam,
                run="plain, random labels"),
            run(run_name(opt="adam", labels="true", objective="split"), held,
                dataclasses.replace(adam, objective="split"), run="gradient splitting"),
        ]  # fmt: skip
    return groups


def endpoint(r: RunResult) -> dict:
    """What the run ended at: accuracy, curvature, input sensitivity; and how sharpness moved."""
    last, first = r.tracking[-1], r.tracking[0]
    sharp = [t["sharpness"] for t in r.tracking if t.get("sharpness") is not None]
    edge = 2.0 / r.spec.training.lr
    return {
        "train_acc": r.final["train_acc"], "test_acc": r.final["test_acc"], "train_loss": r.final["train_loss"],
        "sharpness_init": first.get("sharpness"), "sharpness_max": max(sharp) if sharp else None,
        "sharpness_final": last.get("sharpness"), "two_over_lr": edge,
        "eta_sharpness_final": last.get("eta_sharpness"),
        "first_epoch_at_edge": first_epoch(r.tracking, "sharpness", 0.9 * edge),
        "trace_final": last.get("trace"), "jacobian_train_final": last.get("jacobian.train"),
        "jacobian_test_final": last.get("jacobian.test"), "diverged": bool(last.get("diverged", False)),
    }  # fmt: skip


def summarize(p: Protocol, groups: dict[str, list[RunResult]], out: Path) -> tuple[dict, str]:
    results: dict = {}
    md = ""
    figures = out / "figures"
    if "edge" in groups:
        runs = groups["edge"]
        rows = [{"lr": r.spec.labels["lr"], **endpoint(r)} for r in runs]
        results["edge"] = rows
        label = {r.spec.name: f"eta={r.spec.labels['lr']:g}" for r in runs}
        sharp = Panel({label[r.spec.name]: r.series("sharpness", source="tracking") for r in runs},
                      hlines={f"2/eta={2 / r.spec.labels['lr']:g}": 2 / r.spec.labels["lr"] for r in runs},
                      title="sharpness (top Hessian eigenvalue)", ylabel="lambda_max", logy=True)  # fmt: skip
        loss = Panel({label[r.spec.name]: r.series("train_loss") for r in runs}, title="training loss (MSE)",
                     ylabel="loss", logy=True)  # fmt: skip
        jac = Panel({label[r.spec.name]: r.series("jacobian.train", source="tracking") for r in runs},
                    title="mean input-Jacobian norm (train)", ylabel="||J||_F")  # fmt: skip
        fig = curves([sharp, loss, jac], figures / "edge_of_stability.png",
                     title=f"full-batch GD ({p.data.dataset}, {p.model.arch} {p.model.kwargs})")  # fmt: skip
        md += f"## Progressive sharpening and the edge of stability\n\n![edge]({fig.relative_to(out)})\n\n"
        md += "'at edge' = first tracked epoch with sharpness >= 0.9 * 2/eta.\n\n"
        md += markdown_table(
            ["eta", "2/eta", "sharpness at init", "max", "final", "eta * final", "at edge (epoch)", "train loss",
             "train acc", "test acc", "diverged"],
            [[r["lr"], r["two_over_lr"], r["sharpness_init"], r["sharpness_max"], r["sharpness_final"],
              r["eta_sharpness_final"], r["first_epoch_at_edge"], r["train_loss"], r["train_acc"], r["test_acc"],
              r["diverged"]] for r in rows],
        ) + "\n"  # fmt: skip
    for part, title in (("labels", "True vs random labels under the same gradient descent"),
                        ("splitting", "Gradient splitting vs plain training (Adam, bounded loss)")):  # fmt: skip
        if part not in groups:
            continue
        runs = groups[part]
        rows = [{"run": r.spec.labels["run"], **endpoint(r)} for r in runs]
        results[part] = rows
        panels = [
            Panel({r.spec.labels["run"]: r.series(key, source="tracking") for r in runs}, title=name, ylabel=name,
                  logy=key != "jacobian.test", hlines={"2/eta": 2 / runs[0].spec.training.lr} if key == "sharpness" and part == "labels" else {})
            for key, name in (("sharpness", "sharpness"), ("trace", "Hessian trace"),
                              ("jacobian.train", "input Jacobian (train)"), ("jacobian.test", "input Jacobian (test)"))
        ] + [Panel({r.spec.labels["run"]: r.series("train_acc") for r in runs}, title="train accuracy", ylabel="accuracy")]  # fmt: skip
        fig = curves(panels, figures / f"{part}.png", ncols=3, title=title)
        md += f"## {title}\n\n![{part}]({fig.relative_to(out)})\n\n"
        md += markdown_table(
            ["run", "train acc", "test acc", "sharpness (final)", "trace (final)", "input Jacobian train", "input Jacobian test"],
            [[r["run"], r["train_acc"], r["test_acc"], r["sharpness_final"], r["trace_final"],
              r["jacobian_train_final"], r["jacobian_test_final"]] for r in rows],
        ) + "\n"  # fmt: skip
    return results, md


EXPERIMENT = Experiment(
    "stability_tracking", "Stability tracked through training", PARTS, protocol, plan, summarize,
    settings=lambda p: {"model": f"{p.model.arch} {p.model.kwargs}",
                        "gradient descent": describe_training(p.gd) + f", eta in {list(p.lrs)}",
                        "splitting part": describe_training(p.adam)},
    epochs_of="gd",
)
app = experiment_app(
    EXPERIMENT, help=__doc__.split("\n\n")[0],
    command_help="Track sharpness, trace and input sensitivity through training runs that generalize and that memorize.",
    quick_help="Digits on a CPU in minutes: tanh MLP 1x256, 500 samples.",
    arch_help="Architecture (default: a tanh MLP).",
    epochs_help="Override the scale's gradient-descent epochs (steps).",
)

if __name__ == "__main__":
    app()
