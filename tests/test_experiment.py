"""Experiment sweeps: run names, completed runs skipped, interrupted tracked runs resumed, results and figures."""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import struct

import pytest
import torch
from rich.console import Console

from stability.data.spec import DataSpec
from stability.dynamics.tracking import StabilityTracker
from stability.errors import BadInputError
from stability.files import folder_lock
from stability.models.spec import ModelSpec
from stability.plotting import Panel, curves
from stability.sweeps.executors import SweepFailed
from stability.sweeps.results import markdown_table, write_results
from stability.sweeps.runs import RunResult, RunSpec, Sweep, first_epoch, is_complete, run_name
from stability.training.checkpoint import load_checkpoint
from stability.training.logs import read_metrics
from stability.training.spec import TrainSpec

MLP = ModelSpec(arch="mlp", kwargs={"widths": [16]})
DIGITS = DataSpec(dataset="digits", n_train=150, n_test=100)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class _Interrupt(Exception):
    pass


def _sweep(out) -> Sweep:
    return Sweep(out, progress=False, console=Console(file=io.StringIO()))


def _tracker(data) -> StabilityTracker:
    # float64 and a tight tolerance: a resumed tracker starts Lanczos cold where the uninterrupted one
    # warm-starts, so only well-converged sharpness values can be compared to 1e-6.
    return StabilityTracker(
        data.train.x, data.train.y, subset=50, every=1, dtype=torch.float64, tol=1e-8
    )


def _failing_on_call(n: int, factory):
    """The factory's trackers, whose ``measure`` raises on its ``n``-th call (an interruption mid-run)."""

    def make(data):
        tracker = factory(data)
        measure, calls = tracker.measure, []

        def failing(step, model):
            calls.append(step)
            if len(calls) == n:
                raise _Interrupt
            return measure(step, model)

        tracker.measure = failing
        return tracker

    return make


def _strict_json(text: str):
    """Parse JSON refusing the NaN/Infinity tokens Python's json accepts by default."""

    def refuse(token):
        raise AssertionError(f"non-standard JSON token {token}")

    return json.loads(text, parse_constant=refuse)


def _tracking_file(out) -> list[dict]:
    return [
        _strict_json(line) for line in (out / "tracking.jsonl").read_text().splitlines()
    ]


def _without_seconds(rows):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


# run_name


def test_run_name_formats_settings_in_the_given_order():
    name = run_name(corruption="random-labels", lr=0.2, wd=1e-3, width=64)
    assert name == "corruption=random-labels,lr=0.2,wd=0.001,width=64"
    assert run_name(b=1, a=2) == "b=1,a=2"  # the caller's order, not sorted
    assert (
        run_name(lr=1e-5) == "lr=1e-05"
    )  # exponent notation is still a safe folder name
    assert run_name(seed=0) == "seed=0"
    # Short where that is exact, exact where short would merge different settings into one folder.
    assert run_name(lr=0.1234567) != run_name(lr=0.1234568)
    assert run_name(lr=0.1 * 3) == "lr=0.30000000000000004" != run_name(lr=0.3)


@pytest.mark.parametrize(
    "settings",
    [
        {"corruption": "random/labels"},
        {"note": "two words"},
        {"path": "../up"},
        {"a b": 1},
        {},
    ],
    ids=["slash", "space", "parent", "space-in-key", "empty"],
)
def test_run_name_refuses_characters_unsafe_in_a_folder_name(settings):
    with pytest.raises(ValueError, match="unsafe"):
        run_name(**settings)


# Sweep: train, skip, refuse


def test_run_all_trains_each_run_into_its_folder_and_skips_them_when_complete(tmp_path):
    specs = [
        RunSpec(
            run_name(lr=lr),
            MLP,
            DIGITS,
            TrainSpec(epochs=2, lr=lr, batch_size=50),
            labels={"lr": lr},
        )
        for lr in (0.05, 0.2)
    ]
    first = _sweep(tmp_path).run_all(specs)
    assert list(first) == ["lr=0.05", "lr=0.2"]
    stamps = {}
    for spec in specs:
        out = tmp_path / "runs" / spec.name
        result = first[spec.name]
        assert {"checkpoint.pt", "metrics.jsonl", "config.json"} <= set(os.listdir(out))
        assert result.out_dir == out and result.checkpoint_path == out / "checkpoint.pt"
        assert not result.skipped and result.spec is spec and result.tracking == []
        assert [r["epoch"] for r in result.history] == [0, 1, 2]
        assert result.history == read_metrics(out / "metrics.jsonl")
        ckpt = load_checkpoint(out / "checkpoint.pt")
        assert (
            ckpt.training == spec.training and ckpt.epoch == 2 and ckpt.resume is not None
        )
        stamps[spec.name] = {
            f: ((out / f).read_bytes(), (out / f).stat().st_mtime_ns)
            for f in ("checkpoint.pt", "metrics.jsonl")
        }
    assert (
        first["lr=0.05"].final["train_loss"] != first["lr=0.2"].final["train_loss"]
    )  # two different runs

    second = _sweep(tmp_path).run_all(specs)  # a fresh Sweep: only the folder remembers
    for spec in specs:
        out = tmp_path / "runs" / spec.name
        assert second[spec.name].skipped
        assert second[spec.name].history == first[spec.name].history
        assert is_complete(out, spec)
        for f, (data, mtime) in stamps[spec.name].items():
            assert (out / f).read_bytes() == data, f
            assert (out / f).stat().st_mtime_ns == mtime, f


def test_changed_settings_under_the_same_name_are_refused_and_the_run_left_alone(
    tmp_path,
):
    old = RunSpec("run", MLP, DIGITS, TrainSpec(epochs=1, lr=0.05, batch_size=50))
    sweep = _sweep(tmp_path)
    sweep.run(old)
    out = sweep.run_dir(old)
    before = {
        f: (out / f).read_bytes()
        for f in ("checkpoint.pt", "metrics.jsonl", "config.json")
    }
    assert is_complete(out, old)
    changes = [
        dataclasses.replace(old, training=dataclasses.replace(old.training, lr=0.5)),
        dataclasses.replace(old, training=dataclasses.replace(old.training, epochs=2)),
        dataclasses.replace(old, model=ModelSpec(arch="mlp", kwargs={"widths": [8]})),
        dataclasses.replace(old, data=dataclasses.replace(DIGITS, n_train=120)),
    ]
    for new in changes:
        assert not is_complete(out, new)
        with pytest.raises(BadInputError, match="different"):
            sweep.run(new)
    for f, data in before.items():
        assert (out / f).read_bytes() == data, f
    assert sweep.run(old).skipped  # the original run is still recognized as complete


def test_duplicate_run_names_are_refused_before_anything_trains(tmp_path):
    a = RunSpec("same", MLP, DIGITS, TrainSpec(epochs=1, lr=0.05))
    b = RunSpec("same", MLP, DIGITS, TrainSpec(epochs=1, lr=0.5))
    c = RunSpec("other", MLP, DIGITS, TrainSpec(epochs=1))
    with pytest.raises(ValueError, match="same"):
        _sweep(tmp_path).run_all([c, a, b])
    assert not (tmp_path / "runs").exists()
    # Across groups one name may serve several parts, but only for the very same run.
    with pytest.raises(ValueError, match="two different runs are both named 'same'"):
        _sweep(tmp_path).run_groups({"x": [c, a], "y": [b]})
    assert not (tmp_path / "runs").exists()
    shared = dataclasses.replace(a, labels={"part": "y"})
    groups, done = _sweep(tmp_path).run_groups({"x": [a], "y": [shared]})
    assert list(done) == ["same"] and groups["y"][0].spec.labels == {"part": "y"}
    assert groups["x"][0].history == groups["y"][0].history


# Failures and other writers


def _broken_tracker(data):
    raise RuntimeError("tracker exploded")


def test_a_failing_run_is_reported_the_others_finish_and_a_rerun_retries_it(tmp_path):
    good = [RunSpec(run_name(lr=lr), MLP, DIGITS, TrainSpec(epochs=1, lr=lr, batch_size=50)) for lr in (0.05, 0.2)]
    too_big = RunSpec("too-big", MLP, dataclasses.replace(DIGITS, n_train=100_000), TrainSpec(epochs=1))
    crashing = RunSpec("crashing", MLP, DIGITS, TrainSpec(epochs=1), track=_broken_tracker)
    specs = [good[0], too_big, crashing, good[1]]
    log = io.StringIO()
    with pytest.raises(SweepFailed) as caught:
        Sweep(tmp_path, progress=False, console=Console(file=log, width=300)).run_all(specs)
    failed = caught.value
    assert [f.name for f in failed.failures] == ["too-big", "crashing"]
    assert failed.failures[0].bad_input
    assert failed.failures[0].error == "n_train=100000 + n_heldout=0 exceed the 1437-sample training pool of digits; lower them"
    assert not failed.failures[1].bad_input and failed.failures[1].error == "RuntimeError: tracker exploded"
    assert not failed.bad_input  # not every failure is the user's input: the command exits 1, not 2
    assert str(failed).startswith("2 of 4 runs failed (too-big: n_train=100000 + n_heldout=0 exceed")
    assert list(failed.results) == [good[0].name, good[1].name]
    assert all(is_complete(tmp_path / "runs" / s.name, s) for s in good)
    text = log.getvalue()
    assert "too-big: failed: n_train=100000" in text and "crashing: failed: RuntimeError: tracker exploded" in text
    assert text.count("Traceback") == 1  # where the unexpected error came from; bad input needs no traceback
    assert "runs 4/4 done" not in text and "runs 2/4 done · 0 running · 2 failed · ETA 0:00" in text

    log = io.StringIO()
    with pytest.raises(SweepFailed):  # a rerun retries the failed runs only
        Sweep(tmp_path, progress=False, console=Console(file=log, width=300)).run_all(specs)
    assert log.getvalue().count("complete, skipped") == 2 and log.getvalue().count(": failed:") == 2
    fixed = [good[0], dataclasses.replace(too_big, data=DIGITS), dataclasses.replace(crashing, track=None), good[1]]
    done = _sweep(tmp_path).run_all(fixed)
    assert [r.skipped for r in done.values()] == [True, False, False, True]


def test_a_run_another_process_is_writing_is_refused_and_left_untouched(tmp_path):
    """A second writer on a run folder gets a one-line refusal for that run and changes nothing in it, not even
    the tracking records past the checkpoint that a resume would cut back; the sweep's other runs finish."""
    tracked = RunSpec("tracked", MLP, DIGITS, TrainSpec(epochs=6, lr=0.05, batch_size=50, checkpoint_every=3),
                      track=_tracker)  # fmt: skip
    other = RunSpec("other", MLP, DIGITS, TrainSpec(epochs=1, batch_size=50))
    sweep = _sweep(tmp_path)
    out = sweep.run_dir(tracked)
    with pytest.raises(_Interrupt):  # measured at epochs 0..4, interrupted at 5; the checkpoint is epoch 3's
        sweep.run(dataclasses.replace(tracked, track=_failing_on_call(6, _tracker)))
    assert [r["epoch"] for r in _tracking_file(out)] == [0, 1, 2, 3, 4]
    files = ("checkpoint.pt", "config.json", "metrics.jsonl", "tracking.jsonl")
    before = {f: (out / f).read_bytes() for f in files}
    with folder_lock(out):  # the folder's writer (its lock is per open file, so this process counts as another)
        with pytest.raises(SweepFailed) as caught:
            sweep.run_all([tracked, other])
        assert {f: (out / f).read_bytes() for f in files} == before
    (failure,) = caught.value.failures
    assert failure.name == "tracked" and caught.value.bad_input
    assert failure.error == f"out_dir {out} is in use by process {os.getpid()}; wait for it to finish or choose another out_dir"
    assert is_complete(sweep.run_dir(other), other)
    resumed = sweep.run_all([tracked, other])  # the writer gone, the run resumes from epoch 3
    assert [r["epoch"] for r in resumed["tracked"].tracking] == [0, 1, 2, 3, 4, 5, 6]
    assert resumed["other"].skipped and is_complete(out, tracked)


# Tracking: records, resume, completeness


@pytest.mark.parametrize("checkpoint_every", [2, 3])
def test_an_interrupted_tracked_run_resumes_into_the_uninterrupted_run(
    tmp_path, checkpoint_every
):
    """Measured at epochs 0, 2, 4, 6; the 4th measurement (epoch 6, whose metrics are already written)
    is interrupted. With checkpoints every 3 epochs the record of epoch 4 lies past the checkpoint (3) and
    must be dropped and measured again, not duplicated."""
    training = TrainSpec(
        epochs=6, lr=0.05, batch_size=50, checkpoint_every=checkpoint_every
    )
    spec = RunSpec("tracked", MLP, DIGITS, training, track=_tracker, track_every=2)
    straight = _sweep(tmp_path / "straight").run(spec)
    assert [r["epoch"] for r in straight.tracking] == [0, 2, 4, 6]

    sweep = _sweep(tmp_path / "resumed")
    out = sweep.run_dir(spec)
    with pytest.raises(_Interrupt):
        sweep.run(dataclasses.replace(spec, track=_failing_on_call(4, _tracker)))
    checkpoint_epoch = {2: 4, 3: 3}[checkpoint_every]
    assert load_checkpoint(out / "checkpoint.pt").epoch == checkpoint_epoch
    assert [r["epoch"] for r in read_metrics(out / "metrics.jsonl")] == list(range(7))
    assert [r["epoch"] for r in _tracking_file(out)] == [0, 2, 4]
    assert not is_complete(out, spec)
    with open(out / "tracking.jsonl", "a") as fh:
        fh.write('{"epoch": 6, "st')  # a record cut short by the interruption

    resumed = sweep.run(spec)
    assert not resumed.skipped
    records = _tracking_file(out)
    assert [r["epoch"] for r in records] == [0, 2, 4, 6]
    assert resumed.tracking == records
    assert _without_seconds(resumed.history) == _without_seconds(straight.history)
    assert _without_seconds(read_metrics(out / "metrics.jsonl")) == _without_seconds(
        straight.history
    )
    for a, b in zip(resumed.tracking, straight.tracking):
        assert a["step"] == b["step"]
        assert a["loss"] == pytest.approx(
            b["loss"], rel=1e-12
        )  # the same weights were measured
        assert a["sharpness"] == pytest.approx(b["sharpness"], rel=1e-6)
    assert is_complete(out, spec)
    assert sweep.run(spec).tracking == records


def test_tracking_records_are_strict_json_and_required_for_completeness(tmp_path):
    measures = {
        "inf": lambda model, x, y: math.inf,
        "vec": lambda model, x, y: torch.tensor([1.0, 2.0]),
    }

    def track(data):
        return StabilityTracker(
            data.train.x, data.train.y, subset=50, every=1, measures=measures
        )

    spec = RunSpec(
        "t",
        MLP,
        DIGITS,
        TrainSpec(epochs=3, lr=0.05, batch_size=50),
        track=track,
        track_every=2,
    )
    result = _sweep(tmp_path).run(spec)
    out = result.out_dir
    records = _tracking_file(out)  # no NaN/Infinity tokens
    assert records == result.tracking
    assert [r["epoch"] for r in records] == [
        0,
        2,
        3,
    ]  # every 2 epochs, and always the last
    assert [r["step"] for r in records] == [
        result.history[e]["step"] for e in (0, 2, 3)
    ]
    assert all(r["inf"] is None and r["vec"] == [1.0, 2.0] for r in records)
    assert all(r["sharpness"] > 0 for r in records)
    assert is_complete(out, spec)

    (out / "tracking.jsonl").unlink()
    assert not is_complete(out, spec)
    assert is_complete(
        out, dataclasses.replace(spec, track=None)
    )  # untracked, the run is still whole


def test_a_lost_tracking_file_is_refused_not_replaced_by_an_empty_one(tmp_path):
    spec = RunSpec(
        "t", MLP, DIGITS, TrainSpec(epochs=1, lr=0.05, batch_size=50), track=_tracker
    )
    sweep = _sweep(tmp_path)
    out = sweep.run(spec).out_dir
    (out / "tracking.jsonl").unlink()
    with pytest.raises(BadInputError, match="tracking.jsonl is missing"):
        sweep.run(spec)
    assert not (out / "tracking.jsonl").exists() and not is_complete(out, spec)


def test_series_reads_epochs_and_values_from_history_or_tracking(tmp_path):
    spec = RunSpec("r", MLP, DIGITS, TrainSpec(epochs=3))
    history = [
        {"epoch": 0, "train_acc": 0.1, "heldout_acc": None},
        {"epoch": 1, "train_acc": 0.5},
        {"epoch": 2, "train_acc": None},
        {"epoch": 3, "train_acc": 0.9},
    ]
    tracking = [
        {"epoch": 0, "sharpness": 2.0},
        {"epoch": 2, "sharpness": None},
        {"epoch": 3, "sharpness": 7.5},
    ]
    result = RunResult(spec, tmp_path, history, tracking, skipped=False)
    assert result.series("train_acc") == ([0, 1, 3], [0.1, 0.5, 0.9])
    assert result.series("sharpness", source="tracking") == ([0, 3], [2.0, 7.5])
    assert result.series("sharpness") == ([], [])  # the history holds no sharpness
    assert result.series("heldout_acc") == ([], [])
    steps = RunResult(
        spec,
        tmp_path,
        [{"epoch": 0, "step": 0, "a": 1.0}, {"epoch": 1, "step": 5, "a": 2.0}],
        [],
        False,
    )
    assert steps.series("a", x="step") == ([0, 5], [1.0, 2.0])
    assert result.final is history[-1]


# first_epoch, results files, tables, figures

HISTORY = [
    {"epoch": 0, "step": 0, "train_acc": 0.10, "train_loss": 2.3},
    {
        "epoch": 1,
        "step": 4,
        "train_acc": None,
        "train_loss": None,
    },  # e.g. a metric that did not apply
    {"epoch": 2, "step": 8},
    {"epoch": 3, "step": 12, "train_acc": 0.95, "train_loss": 0.5},
    {"epoch": 4, "step": 16, "train_acc": 1.00, "train_loss": 0.01},
]


def test_first_epoch_finds_when_a_level_is_reached():
    assert first_epoch(HISTORY, "train_acc", 0.9) == 3
    assert first_epoch(HISTORY, "train_acc", 0.95) == 3  # reaching is inclusive
    assert first_epoch(HISTORY, "train_acc", 0.05) == 0
    assert (
        first_epoch(HISTORY, "train_loss", 0.5, below=True) == 4
    )  # falling under is strict
    assert first_epoch(HISTORY, "train_loss", 3.0, below=True) == 0
    assert first_epoch(HISTORY, "train_acc", 0.9, at="step") == 12
    assert first_epoch(HISTORY, "train_acc", 1.01) is None
    assert first_epoch(HISTORY, "train_loss", 0.0, below=True) is None
    assert first_epoch(HISTORY, "test_acc", 0.0) is None
    assert first_epoch(iter(HISTORY), "train_acc", 0.9) == 3  # any iterable of rows


def test_write_results_writes_strict_json_and_the_markdown_verbatim(tmp_path):
    results = {
        "runs": {
            "lr=0.1": {
                "final": 0.5,
                "nan": math.nan,
                "inf": math.inf,
                "ninf": -math.inf,
            }
        },
        "pair": (1, 2.5),
        "by_width": {16: {0.5: [math.nan, 3]}},
    }
    markdown = "# Results\n\n| run | acc |\n|---|---|\n| a | — |\n"
    out = tmp_path / "new" / "folder"
    json_path, md_path = write_results(out, results, markdown)
    assert (json_path, md_path) == (out / "results.json", out / "results.md")
    assert _strict_json(json_path.read_text()) == {
        "runs": {"lr=0.1": {"final": 0.5, "nan": None, "inf": None, "ninf": None}},
        "pair": [1, 2.5],
        "by_width": {"16": {"0.5": [None, 3]}},
    }
    assert md_path.read_bytes() == markdown.encode("utf-8")
    assert sorted(os.listdir(out)) == ["results.json", "results.md"]
    # Writing again replaces both files whole and still leaves nothing else behind.
    write_results(out, {"x": 1}, "short\n")
    assert _strict_json(json_path.read_text()) == {"x": 1}
    assert md_path.read_text(encoding="utf-8") == "short\n"
    assert sorted(os.listdir(out)) == ["results.json", "results.md"]


def test_markdown_table_formats_floats_and_missing_values():
    rows = [
        ["a", 0.91264, None, 3],
        ["b", math.nan, 1.0, 10],
        ["c", math.inf, -0.25, 0],
    ]
    text = markdown_table(["run", "acc", "loss", "n"], rows)
    assert text.endswith("\n")
    assert text.rstrip("\n").split("\n") == [
        "| run | acc | loss | n |",
        "|---|---|---|---|",
        "| a | 0.913 | — | 3 |",  # ints are not shown as floats
        "| b | — | 1.000 | 10 |",
        "| c | — | -0.250 | 0 |",
    ]
    assert markdown_table(["a"], []).rstrip("\n").split("\n") == ["| a |", "|---|"]


def _png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    return struct.unpack(">II", data[16:24])  # the IHDR chunk: width, height


def test_curves_writes_panels_side_by_side_or_wrapped_as_a_png(tmp_path):
    linear = Panel({"train": ([0, 1, 2], [0.1, 0.6, 0.9]), "test": ([0, 1, 2], [0.1, 0.5, 0.7])}, title="accuracy",
                   styles={"test": {"linestyle": "--"}}, marker="o")  # fmt: skip
    log = Panel(
        {"sharpness": ([0, 2, 4], [1.0, 10.0, 100.0])},
        logy=True,
        hlines={"2/η": 40.0},
        ylabel="λ_max",
    )
    out = tmp_path / "figs"
    path = curves([linear, log], out / "curves.png", title="run")
    assert path == out / "curves.png"
    assert _png_size(path) == (
        1104,
        432,
    )  # two 4.6 x 3.6 inch panels in a row at 120 dpi
    wrapped = curves([linear, log, linear], out / "wrapped.png", ncols=2)
    assert _png_size(wrapped) == (1104, 864)  # three panels wrap onto two rows
    assert sorted(os.listdir(out)) == [
        "curves.png",
        "wrapped.png",
    ]  # no temporary files left
