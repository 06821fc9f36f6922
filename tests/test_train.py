"""The training loop: outputs, resume, gradient splitting, augmentation, and refusing to overwrite runs."""

from __future__ import annotations

import json

import pytest
import torch

from stability.data.bundle import load_data
from stability.data.spec import DataSpec
from stability.errors import BadInputError
from stability.models.spec import ModelSpec
from stability.training.augment import augment_images
from stability.training.checkpoint import build_model_from_checkpoint, load_checkpoint
from stability.training.logs import read_metrics
from stability.training.spec import TrainSpec
from stability.training.train import evaluate, train

MLP = ModelSpec(arch="mlp", kwargs={"widths": [32]})
DIGITS = DataSpec(dataset="digits", n_train=300, n_test=200)


def test_run_writes_config_metrics_and_a_checkpoint_that_reproduces_its_metrics(tmp_path):
    spec = TrainSpec(epochs=3, lr=0.05, batch_size=32, checkpoint_every=2)
    result = train(MLP, DIGITS, spec, tmp_path)
    rows = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["epoch"] for r in rows] == [0, 1, 2, 3]
    assert rows[-1]["step"] == 3 * -(-300 // 32)
    assert json.loads((tmp_path / "config.json").read_text())["training"]["lr"] == 0.05
    ckpt = load_checkpoint(tmp_path / "checkpoint.pt")
    # A finished run keeps its optimizer state: the optimizer-aware verdicts of analyze read it.
    assert ckpt.epoch == 3 and ckpt.resume is not None and ckpt.resume["optimizer"]["state"]
    model = build_model_from_checkpoint(ckpt)
    data = load_data(ckpt.data)
    again = evaluate(model, data.test, "cross-entropy")
    assert again["acc"] == pytest.approx(rows[-1]["test_acc"], abs=1e-12)
    assert again["loss"] == pytest.approx(rows[-1]["test_loss"], rel=1e-6)
    assert result.final["train_acc"] > 0.5  # three epochs on digits already learn something


class _Interrupt(Exception):
    pass


def test_resume_reproduces_an_uninterrupted_run(tmp_path):
    """Dropout and augmentation draw random numbers every step: resume must restore every stream."""
    model = ModelSpec(arch="mlp", kwargs={"widths": [32], "dropout": 0.2})
    spec = TrainSpec(epochs=5, lr=0.05, batch_size=64, checkpoint_every=2, augment=True)
    straight = train(model, DIGITS, spec, tmp_path / "straight")

    def crash_after_epoch_3(row, _model):
        if row["epoch"] == 3:
            raise _Interrupt

    with pytest.raises(_Interrupt):
        train(model, DIGITS, spec, tmp_path / "resumed", on_epoch=crash_after_epoch_3)
    assert load_checkpoint(tmp_path / "resumed" / "checkpoint.pt").epoch == 2
    resumed = train(model, DIGITS, spec, tmp_path / "resumed", resume=True)

    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert strip(read_metrics(tmp_path / "resumed" / "metrics.jsonl")) == strip(
        read_metrics(tmp_path / "straight" / "metrics.jsonl")
    )
    # Resuming a finished run does nothing and changes nothing.
    again = train(model, DIGITS, spec, tmp_path / "resumed", resume=True)
    assert len(again.history) == 6


def test_existing_run_is_never_overwritten(tmp_path):
    spec = TrainSpec(epochs=1)
    train(MLP, DIGITS, spec, tmp_path)
    before = (tmp_path / "checkpoint.pt").read_bytes()
    with pytest.raises(BadInputError, match="--resume"):
        train(MLP, DIGITS, spec, tmp_path)
    with pytest.raises(BadInputError, match="different training"):
        train(MLP, DIGITS, TrainSpec(epochs=1, lr=0.5), tmp_path, resume=True)
    assert (tmp_path / "checkpoint.pt").read_bytes() == before


def test_gradient_splitting_drives_heldout_accuracy_below_chance(tmp_path):
    """Badger's objective L_train - L_heldout anti-learns the held-out set (accuracy < 1/10) while the
    untouched test set stays far above chance; plain training on the same data generalizes to both."""
    data = DataSpec(dataset="digits", n_train=300, n_heldout=300, noise_fraction=0.5)
    model = ModelSpec(arch="mlp", kwargs={"widths": [512]})
    common = dict(loss="bounded-cross-entropy", optimizer="adam", lr=1e-3, batch_size=100, epochs=60)
    result = train(model, data, TrainSpec(objective="split", **common), tmp_path / "split")
    plain = train(model, data, TrainSpec(**common), tmp_path / "plain")
    held = [r["heldout_acc"] for r in result.history]
    assert min(held[1:]) < 0.1, held
    assert result.final["test_acc"] > 0.3
    assert plain.final["heldout_acc"] > 0.5 and plain.final["test_acc"] > 0.5
    # The switch: epochs that start below the threshold (0.11) train on L_train alone.
    for before, row in zip(result.history, result.history[1:]):
        assert row["split_active"] == float(before["heldout_acc"] >= 0.11)


def test_split_window_switches_the_objective_mid_run_both_ways(tmp_path):
    """Epochs outside [split_start, split_stop) train on L_train alone, whatever the held-out accuracy."""
    data = DataSpec(dataset="digits", n_train=200, n_heldout=200, n_test=100)
    common = dict(loss="bounded-cross-entropy", optimizer="adam", lr=1e-3, batch_size=100, epochs=6, split_threshold=0.0)
    later = train(MLP, data, TrainSpec(objective="split", split_start=3, **common), tmp_path / "later")
    first = train(MLP, data, TrainSpec(objective="split", split_stop=2, **common), tmp_path / "first")
    assert [r["split_active"] for r in later.history[1:]] == [0, 0, 0, 1, 1, 1]
    assert [r["split_active"] for r in first.history[1:]] == [1, 1, 0, 0, 0, 0]
    # Before the window opens the run is exactly plain training.
    plain = train(MLP, data, TrainSpec(epochs=3, **{k: v for k, v in common.items() if k != "epochs"}), tmp_path / "plain")
    assert plain.history[3]["train_loss"] == later.history[3]["train_loss"]
    with pytest.raises(BadInputError, match="split_start <= split_stop"):
        TrainSpec(split_start=4, split_stop=2)


def test_splitting_without_heldout_is_refused(tmp_path):
    with pytest.raises(BadInputError, match="n_heldout"):
        train(MLP, DIGITS, TrainSpec(objective="split", epochs=1), tmp_path)


def test_mse_full_batch_gradient_descent_decreases_the_loss(tmp_path):
    spec = TrainSpec(loss="mse", optimizer="sgd", momentum=0.0, lr=0.1, batch_size=0, epochs=5)
    rows = train(MLP, DIGITS, spec, tmp_path).history
    assert [r["step"] for r in rows] == [0, 1, 2, 3, 4, 5]  # one step per epoch
    losses = [r["train_loss"] for r in rows]
    assert all(b < a for a, b in zip(losses, losses[1:])), losses


def test_augmentation_matches_a_per_image_reference():
    x = torch.arange(2 * 1 * 8 * 8, dtype=torch.float32).reshape(2, 1, 8, 8).repeat(5, 1, 1, 1)
    out = augment_images(x, torch.Generator().manual_seed(7))
    g = torch.Generator().manual_seed(7)
    shifts = torch.randint(0, 5, (2, 10), generator=g)
    flips = torch.rand(10, generator=g) < 0.5
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(10):
        r, c = shifts[0, i].item(), shifts[1, i].item()
        expected = padded[i, :, r : r + 8, c : c + 8]
        if flips[i]:
            expected = expected.flip(-1)
        assert torch.equal(out[i], expected)
    assert not torch.equal(out, x)


def test_crop_only_augmentation_shifts_without_flipping():
    x = torch.randn(64, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    out = augment_images(x, torch.Generator().manual_seed(3), flip=False)
    shifts = torch.randint(0, 5, (2, 64), generator=torch.Generator().manual_seed(3))
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(64):
        r, c = shifts[0, i].item(), shifts[1, i].item()
        assert torch.equal(out[i], padded[i, :, r : r + 8, c : c + 8])


def test_learning_rate_decays_per_epoch(tmp_path):
    rows = train(MLP, DIGITS, TrainSpec(epochs=3, lr=0.1, lr_decay=0.5), tmp_path).history
    assert [r["lr"] for r in rows] == pytest.approx([0.1, 0.1, 0.05, 0.025])  # the rate each epoch used


def _interrupted(out, epochs=5, at=3):
    """A run of ``epochs`` epochs stopped after epoch ``at``'s metrics row (its last checkpoint: ``at - 1``)."""

    def crash(row, _model):
        if row["epoch"] == at:
            raise _Interrupt

    spec = TrainSpec(epochs=epochs, lr=0.05, batch_size=64)
    with pytest.raises(_Interrupt):
        train(MLP, DIGITS, spec, out, on_epoch=crash)
    return spec


def test_a_damaged_metrics_line_is_reported_and_no_row_is_dropped(tmp_path):
    spec = _interrupted(tmp_path)
    path = tmp_path / "metrics.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    damaged = "".join(lines[:1] + ['{"epoch": 1, "train_lo\n'] + lines[2:])
    path.write_text(damaged)
    with pytest.raises(BadInputError, match=r"metrics.jsonl line 2 is damaged, and the rows after it would be lost"):
        train(MLP, DIGITS, spec, tmp_path, resume=True)
    assert path.read_text() == damaged  # nothing cut
    path.write_text("".join(lines[:2]))  # rows 2.. missing while the checkpoint is at epoch 2
    with pytest.raises(BadInputError, match="would miss rows"):
        train(MLP, DIGITS, spec, tmp_path, resume=True)


def test_a_write_cut_short_by_a_kill_is_dropped_and_the_run_completes(tmp_path):
    """kill -9 mid-append leaves a last line without its newline, and a temp file of a checkpoint write."""
    spec = _interrupted(tmp_path)
    path = tmp_path / "metrics.jsonl"
    path.write_text(path.read_text() + '{"epoch": 4, "trai')
    (tmp_path / ".checkpoint.pt.x1y2.tmp").write_bytes(b"half a checkpoint")
    result = train(MLP, DIGITS, spec, tmp_path, resume=True)
    assert [r["epoch"] for r in read_metrics(path)] == [0, 1, 2, 3, 4, 5]
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*.tmp"))
    assert any("temporary file" in note for note in result.notes)


def test_a_stale_lock_from_a_killed_process_is_reported_and_taken_over(tmp_path):
    import subprocess
    import sys

    spec = _interrupted(tmp_path)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / ".lock").write_text(str(dead.pid))
    result = train(MLP, DIGITS, spec, tmp_path, resume=True)
    assert any(f"({dead.pid}) was killed" in note for note in result.notes)
    assert (tmp_path / ".lock").read_text() == ""  # released on exit


def test_a_second_writer_is_refused_in_one_line(tmp_path):
    from stability.files import folder_lock

    with folder_lock(tmp_path / "run"):
        with pytest.raises(BadInputError, match=r"is in use by process \d+; wait for it to finish"):
            train(MLP, DIGITS, TrainSpec(epochs=1), tmp_path / "run")
    train(MLP, DIGITS, TrainSpec(epochs=1), tmp_path / "run")  # free again


@pytest.mark.slow
def test_two_processes_started_together_on_one_folder(tmp_path):
    """Two `stability train` on the same --out, started together: one runs, the other is refused in one
    line, and metrics.jsonl holds every epoch exactly once."""
    import subprocess
    import sys

    args = [sys.executable, "-m", "stability.cli", "train", "--out", str(tmp_path / "run"), "--epochs", "40",
            "--n-train", "500", "--no-progress"]  # fmt: skip
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 2], outs
    refused = next(err for p, (_, err) in zip(procs, outs) if p.returncode == 2)
    assert len(refused.strip().splitlines()) == 1 and ("in use by process" in refused or "already holds a run" in refused)
    assert [r["epoch"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl")] == list(range(41))


def test_resume_state_that_does_not_fit_is_one_line(tmp_path):
    from stability.training.checkpoint import seal

    spec = _interrupted(tmp_path)
    path = tmp_path / "checkpoint.pt"
    good = torch.load(path, weights_only=True)
    state = good["resume"]["optimizer"]
    wrong_shapes = {**state, "state": {k: {**v, "momentum_buffer": torch.zeros(3)} for k, v in state["state"].items()}}
    bad_states = {
        "optimizer": {**good["resume"], "optimizer": {**state, "param_groups": []}},
        "momentum": {**good["resume"], "optimizer": wrong_shapes},
        "rng": {**good["resume"], "torch_rng": torch.zeros(7, dtype=torch.uint8)},
    }
    for name, resume in bad_states.items():
        torch.save(seal({**good, "resume": resume}), path)
        with pytest.raises(BadInputError, match="does not fit this run") as info:
            train(MLP, DIGITS, spec, tmp_path, resume=True)
        assert "\n" not in str(info.value), name


def test_a_diverging_run_stops_before_writing_non_finite_weights(tmp_path):
    with pytest.raises(BadInputError, match=r"training diverged at epoch (\d): non-finite weights in fc1.weight") as info:
        train(MLP, DIGITS, TrainSpec(epochs=3, lr=1e30, momentum=0.0, batch_size=0), tmp_path)
    diverged = int(str(info.value).split("epoch ")[1].split(":")[0])
    if (tmp_path / "checkpoint.pt").exists():  # the last finite one, loadable (finite weights are checked)
        assert load_checkpoint(tmp_path / "checkpoint.pt").epoch < diverged
