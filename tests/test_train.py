"""The training loop: outputs, resume, gradient splitting, augmentation, and refusing to overwrite runs."""

from __future__ import annotations

import json

import pytest
import torch

from stability.data.bundle import load_data
from stability.data.spec import DataSpec
from stability.errors import BadInputError
from stability.models.spec import ModelSpec
from stability.training.checkpoint import build_model_from_checkpoint, load_checkpoint
from stability.training.logs import read_metrics
from stability.training.spec import TrainSpec
from stability.training.train import augment_images, evaluate, train

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
    assert ckpt.epoch == 3 and ckpt.resume is None  # a finished run keeps no optimizer state
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
