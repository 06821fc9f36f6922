"""Checkpoints: round trip, atomic writes, and every way a file can be bad."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import pytest
import torch

from stability.data.spec import DataSpec
from stability.errors import CheckpointError
from stability.files import atomic_write
from stability.models.registry import build_model
from stability.models.spec import ModelSpec
from stability.training.checkpoint import (
    Checkpoint,
    build_model_from_checkpoint,
    checkpoint_from_dict,
    load_checkpoint,
    save_checkpoint,
    seal,
)
from stability.training.spec import TrainSpec

MODEL = ModelSpec(arch="mlp", kwargs={"widths": [16]})


def make_checkpoint(**overrides) -> Checkpoint:
    torch.manual_seed(0)
    model = build_model(MODEL, (1, 8, 8), 10)
    fields = dict(
        model=MODEL, input_shape=(1, 8, 8), num_classes=10, state_dict=model.state_dict(),
        data=DataSpec(dataset="digits", corruption="partial-labels", corruption_prob=0.3, n_train=100, seed=3),
        training=TrainSpec(lr=0.05, epochs=7), epoch=7, metrics={"train_acc": 0.5},
    )  # fmt: skip
    fields.update(overrides)
    return Checkpoint(**fields)


def test_round_trip_preserves_specs_and_weights(tmp_path):
    ckpt = make_checkpoint()
    path = save_checkpoint(tmp_path / "c.pt", ckpt)
    raw = torch.load(path, weights_only=True)  # readable with the safe loader alone
    assert raw["format"] == "stability-checkpoint" and raw["version"] == 2 and len(raw["digest"]) == 64
    back = load_checkpoint(path)
    assert back.model == ckpt.model and back.data == ckpt.data and back.training == ckpt.training
    assert back.input_shape == (1, 8, 8) and back.num_classes == 10 and back.epoch == 7
    for k, v in ckpt.state_dict.items():
        assert torch.equal(back.state_dict[k], v)
    model = build_model_from_checkpoint(back)
    assert not model.training
    x = torch.randn(3, 1, 8, 8)
    reference = build_model(MODEL, (1, 8, 8), 10)
    reference.load_state_dict(ckpt.state_dict)
    assert torch.equal(model(x), reference.eval()(x))


def test_atomic_write_keeps_old_file_when_interrupted(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint(path, make_checkpoint())
    before = path.read_bytes()

    def crash(fh):
        fh.write(b"partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, crash)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temp file left behind


@pytest.mark.parametrize(
    "content, phrase",
    [
        (None, "no such file"),
        (b"", "is empty"),
        (b"\x00\x01garbage that is not a checkpoint" * 10, "not a readable checkpoint"),
    ],
)
def test_unreadable_files(tmp_path, content, phrase):
    path = tmp_path / "c.pt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=phrase) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_truncated_checkpoint(tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", make_checkpoint())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(path)


class _RunsCode:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickle_that_would_run_code_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"format": "stability-checkpoint", "payload": _RunsCode(marker)}, path)
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="--unsafe-pickle"):
        load_checkpoint(path)
    assert not marker.exists()
    # A raw pickle file (not torch's zip format) is refused as well.
    raw = tmp_path / "evil.pkl"
    raw.write_bytes(pickle.dumps(_RunsCode(marker)))
    with pytest.raises(CheckpointError):
        load_checkpoint(raw)
    assert not marker.exists()


def test_unsafe_opt_in_loads_trusted_objects(tmp_path):
    path = tmp_path / "c.pt"
    obj = make_checkpoint().to_dict()
    obj["note"] = Path("made-by-me")  # not allowed by the safe loader
    torch.save(seal(obj), path)
    with pytest.raises(CheckpointError, match="--unsafe-pickle"):
        load_checkpoint(path)
    assert load_checkpoint(path, unsafe_pickle=True).epoch == 7


def test_bare_state_dict_asks_for_arch_and_dataset(tmp_path):
    path = tmp_path / "sd.pt"
    torch.save(make_checkpoint().state_dict, path)
    with pytest.raises(CheckpointError, match="--arch"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    "mutate, phrase",
    [
        (lambda d: d.update(format="something-else"), "format"),
        (lambda d: d.update(version=99), "version 99"),
        (lambda d: d.pop("data"), "no 'data' field"),
        (lambda d: d["data"].update(corruption="upside-down"), "corruption"),
        (lambda d: d["model"].update(colour="red"), "colour"),
        (lambda d: d.update(state_dict=[1, 2]), "state_dict"),
    ],
)
def test_malformed_dicts(mutate, phrase):
    obj = make_checkpoint().to_dict()
    mutate(obj)
    with pytest.raises(CheckpointError, match=phrase):
        checkpoint_from_dict(seal(obj))
    if "digest" in obj and phrase not in ("format", "version 99"):  # the same edit, not resealed
        with pytest.raises(CheckpointError, match="integrity check"):
            checkpoint_from_dict(obj)


def test_nan_weights_are_refused():
    ckpt = make_checkpoint()
    sd = {k: v.clone() for k, v in ckpt.state_dict.items()}
    next(iter(sd.values()))[0] = float("nan")
    with pytest.raises(CheckpointError, match="non-finite weights in fc1.weight"):
        checkpoint_from_dict(make_checkpoint(state_dict=sd).to_dict())


def test_state_dict_that_does_not_fit_the_architecture():
    ckpt = make_checkpoint(model=ModelSpec(arch="mlp", kwargs={"widths": [32]}))
    with pytest.raises(CheckpointError, match="does not fit the architecture.*shape mismatch"):
        build_model_from_checkpoint(ckpt)


def test_checkpoint_bytes_are_loadable_from_a_buffer():
    buf = io.BytesIO()
    torch.save(make_checkpoint().to_dict(), buf)
    buf.seek(0)
    assert checkpoint_from_dict(torch.load(buf, weights_only=True)).data.corruption_prob == 0.3
