"""Each experiment script's smallest configuration (``--smoke``), end to end: runs, figures, results, resume."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from experiments import memorize, randomization, stability_tracking
from stability.training.checkpoint import load_checkpoint
from stability.training.logs import read_metrics

runner = CliRunner()


def invoke(module, *args: str):
    return runner.invoke(module.app, ["--smoke", "--device", "cpu", *args])


def final_row(run_dir):
    return read_metrics(run_dir / "metrics.jsonl")[-1]


@pytest.fixture(scope="module")
def randomization_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("randomization")
    result = invoke(randomization, "--out", str(out))
    assert result.exit_code == 0, result.output
    return out


def test_randomization_writes_every_part_from_its_runs(randomization_out):
    out = randomization_out
    res = json.loads((out / "results.json").read_text())
    assert res["parts"] == ["tests", "corruption", "regularization"]
    assert [r["test"] for r in res["tests"]] == list(randomization.TESTS)
    # Numbers in results.json are the runs' own final metrics, read back independently.
    for row in res["tests"]:
        name = randomization.name_of(randomization.corrupted(randomization.protocol("smoke", "digits", None),
                                                             row["test"], 0.5))  # fmt: skip
        assert row["train_acc"] == final_row(out / "runs" / name)["train_acc"]
    # p = 0 and p = 1 are the true- and random-label runs, trained once.
    by_p = {r["p"]: r for r in res["corruption"]}
    by_test = {r["test"]: r for r in res["tests"]}
    assert by_p[0.0]["test_error"] == pytest.approx(1 - by_test["true"]["test_acc"])
    assert by_p[1.0]["train_acc"] == by_test["random-labels"]["train_acc"]
    planned = randomization.plan(randomization.protocol("smoke", "digits", None), randomization.PARTS)
    assert sorted(p.name for p in (out / "runs").iterdir()) == sorted({s.name for g in planned.values() for s in g})
    # Dropout reaches the model, weight decay and augmentation the training spec.
    ckpt = load_checkpoint(out / "runs" / "data=true,reg=all" / "checkpoint.pt")
    assert ckpt.model.kwargs["dropout"] == 0.5 and ckpt.training.weight_decay == 5e-4 and ckpt.training.augment
    assert not ckpt.training.augment_flip  # random crops alone, as Zhang et al.
    regs = {(r["regularizers"], r["labels"]) for r in res["regularization"]}
    assert ("weight-decay", "random-labels") in regs and len(regs) == 12
    for fig in ("learning_curves.png", "label_corruption.png"):
        assert (out / "figures" / fig).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "results.md").read_text()
    assert "paper" not in md  # the paper's CIFAR-10 numbers only appear beside CIFAR-10 runs


def test_rerun_skips_finished_runs_and_rewrites_the_same_results(randomization_out):
    out = randomization_out
    before = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/checkpoint.pt")}
    first = json.loads((out / "results.json").read_text())
    result = invoke(randomization, "--out", str(out), "--part", "corruption")
    assert result.exit_code == 0, result.output
    assert "complete, skipped" in result.output
    assert {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/checkpoint.pt")} == before
    again = json.loads((out / "results.json").read_text())
    assert again["parts"] == ["corruption"] and again["corruption"] == first["corruption"]


def test_bad_options_exit_2_with_one_line(tmp_path):
    result = invoke(randomization, "--out", str(tmp_path), "--part", "nonsense")
    assert result.exit_code == 2 and "unknown part(s) nonsense" in result.output
    result = runner.invoke(memorize.app, ["--smoke", "--quick", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "exclude each other" in result.output
    result = invoke(memorize, "--out", str(tmp_path), "--dataset", "cifar10", "--data-root", str(tmp_path))
    assert result.exit_code == 2 and "error:" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "results.json").exists()


def test_memorize_smoke_runs_every_part(tmp_path):
    result = invoke(memorize, "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    res = json.loads((tmp_path / "results.json").read_text())
    assert set(res) >= {"splitting", "switching", "noise", "size"}
    assert [r["phi"] for r in res["noise"]] == [1.0, 0.0]
    assert [(r["inputs"], r["n"]) for r in res["size"]] == [("natural", 30), ("natural", 60), ("random", 30), ("random", 60)]
    for row in res["size"]:
        assert row["gap"] == pytest.approx(row["train_acc"] - row["test_acc"])
    # The switched runs split only inside their window.
    late = read_metrics(tmp_path / "runs" / "objective=plain-then-split,at=2" / "metrics.jsonl")
    early = read_metrics(tmp_path / "runs" / "objective=split-then-plain,at=2" / "metrics.jsonl")
    assert all(r["split_active"] == 0 for r in late[1:3]) and all(r["split_active"] == 0 for r in early[3:])
    assert load_checkpoint(tmp_path / "runs" / "objective=split,phi=0" / "checkpoint.pt").data.noise_fraction == 1.0
    for fig in ("splitting.png", "switching.png", "noise.png", "size.png"):
        assert (tmp_path / "figures" / fig).exists()


@pytest.mark.slow
def test_stability_tracking_smoke_tracks_every_run(tmp_path):
    result = invoke(stability_tracking, "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    res = json.loads((tmp_path / "results.json").read_text())
    assert [r["lr"] for r in res["edge"]] == [0.02, 0.04]
    for row in res["edge"]:
        assert row["two_over_lr"] == pytest.approx(2 / row["lr"])
        assert row["eta_sharpness_final"] == pytest.approx(row["lr"] * row["sharpness_final"])
    # The true-label run at eta = 0.04 serves both the edge and the labels part: trained once.
    assert res["labels"][0]["sharpness_final"] == res["edge"][1]["sharpness_final"]
    runs = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert len(runs) == 6  # 2 step sizes + random labels + 3 Adam runs; the shared run once
    for name in runs:
        tracking = [json.loads(line) for line in (tmp_path / "runs" / name / "tracking.jsonl").read_text().splitlines()]
        assert [t["epoch"] for t in tracking] == [0, 2, 4]
        assert all({"sharpness", "trace", "jacobian.train", "jacobian.test"} <= set(t) for t in tracking)
    split = load_checkpoint(tmp_path / "runs" / "opt=adam,labels=true,objective=split" / "checkpoint.pt")
    assert split.training.objective == "split" and split.training.loss == "bounded-cross-entropy"


def test_docs_commands_parse_and_figures_exist():
    """docs/experiments.md: every script command it shows is accepted by that script, every figure exists."""
    import re
    import shlex
    from pathlib import Path

    import typer.main

    docs = Path(__file__).resolve().parents[1] / "docs"
    text = (docs / "experiments.md").read_text()
    scripts = {"randomization": randomization, "memorize": memorize, "stability_tracking": stability_tracking}
    commands = re.findall(r"^python experiments/(\w+)\.py([^#\n]*)", text, flags=re.M)
    assert {name for name, _ in commands} == set(scripts)
    for name, args in commands:
        command = typer.main.get_command(scripts[name].app)
        command.make_context(name, shlex.split(args))  # raises on an unknown option or a bad value
    figures = re.findall(r"\]\((figures/[^)]+\.png)\)", text)
    assert len(figures) >= 8
    for fig in figures:
        assert (docs / fig).is_file(), fig


def test_paper_numbers_appear_beside_a_cifar10_run(tmp_path):
    """On CIFAR-10 (here a small file in the standard batch format) results.md shows Table 1's numbers."""
    import numpy as np
    from test_data_formats import py2_pickle  # CIFAR-10's own format: a Python 2 pickle

    rng = np.random.default_rng(0)
    folder = tmp_path / "data" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, size=(100, 3072), dtype=np.uint8),
                 b"labels": [int(v) for v in rng.integers(0, 10, size=100)]}  # fmt: skip
        (folder / name).write_bytes(py2_pickle(batch))
    out = tmp_path / "out"
    result = invoke(randomization, "--dataset", "cifar10", "--data-root", str(tmp_path / "data"), "--arch", "mlp",
                    "--part", "regularization", "--out", str(out))  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = {(r["regularizers"], r["labels"]): r for r in json.loads((out / "results.json").read_text())["regularization"]}
    assert (rows[("none", "true")]["paper_train_pct"], rows[("none", "true")]["paper_test_pct"]) == (100.0, 50.51)
    assert rows[("none", "random-labels")]["paper_test_pct"] == 10.61
    assert rows[("dropout", "true")]["paper_test_pct"] is None
    assert "| paper train % | paper test % |" in (out / "results.md").read_text()


def test_seed_reseeds_every_spec_and_gets_its_own_folder(tmp_path):
    from stability.sweeps.command import default_out, with_seed

    p = with_seed(stability_tracking.protocol("quick", "digits", None), 3)
    assert p.data.seed == p.gd.seed == p.adam.seed == 3 and p.lrs == (0.01, 0.02, 0.04, 0.06)
    assert default_out("memorize", "quick", "digits", 3).name == "quick-digits-seed3"
    assert default_out("memorize", "quick", "digits", 0).name == "quick-digits"
    result = invoke(memorize, "--out", str(tmp_path), "--part", "splitting", "--seed", "2")
    assert result.exit_code == 0, result.output
    ckpt = load_checkpoint(tmp_path / "runs" / "objective=split" / "checkpoint.pt")
    assert ckpt.data.seed == 2 and ckpt.training.seed == 2
    assert json.loads((tmp_path / "results.json").read_text())["seed"] == 2
    result = invoke(memorize, "--out", str(tmp_path), "--seed", "-1")
    assert result.exit_code == 2 and "--seed must be non-negative" in result.output


@pytest.mark.slow
def test_two_drivers_on_one_folder_train_each_run_once_and_corrupt_none(tmp_path):
    """Two processes started together on the same sweep folder: each run folder has one writer at a time (the
    other is refused for that run and moves on), and every run ends as the same sweep run alone would end it."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from test_ray import assert_same_run_folders

    grid = ["--smoke", "--part", "tests", "--epochs", "40", "--device", "cpu"]
    alone = tmp_path / "alone"
    assert runner.invoke(randomization.app, [*grid, "--out", str(alone)]).exit_code == 0
    shared = tmp_path / "shared"
    cmd = [sys.executable, "experiments/randomization.py", *grid, "--out", str(shared)]
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # one core each
    drivers = [subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
               for _ in range(2)]  # fmt: skip
    outputs = [d.communicate(timeout=300)[0] for d in drivers]
    for d, output in zip(drivers, outputs):
        assert d.returncode in (0, 2), output  # 2: some of its runs were in use by the other driver
        if d.returncode == 2:
            assert "is in use by process" in output and "Traceback" not in output
    assert_same_run_folders(shared, alone)
    rerun = runner.invoke(randomization.app, [*grid, "--out", str(shared)])
    assert rerun.exit_code == 0 and rerun.output.count("complete, skipped") == 6
