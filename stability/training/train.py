"""The training loop: device-resident data, index batching, the paper objectives, resumable runs.

A run is fully determined by ``(ModelSpec, DataSpec, TrainSpec)``. It writes into its output folder:

- ``config.json``: the three specs;
- ``metrics.jsonl``: one JSON line per epoch (epoch 0 is the initialization), see :data:`METRIC_KEYS`;
- ``checkpoint.pt``: weights + specs + last metrics (what ``stability analyze`` reads) and the optimizer
  and RNG state (kept in the last checkpoint too, so a finished run can be extended and analyzed by its
  optimizer), written atomically every ``checkpoint_every`` epochs.

Interrupting a run loses at most the epochs since the last checkpoint (by default one checkpoint per
epoch, so at most the epoch in progress); ``resume=True`` continues from it and reproduces, on the same
device, the run that was never interrupted. One process at a time writes a run folder
(:class:`~stability.files.folder_lock`); temporary files left by a killed process are removed on the next
start, and a damaged ``metrics.jsonl`` is refused on resume rather than silently cut
(:mod:`stability.training.logs`). A run whose weights become non-finite stops with an error; its last
finite checkpoint stays.

Gradient splitting (Badger 2022) minimizes ``J(θ) = L_train(θ) − L_heldout(θ)`` on paired minibatches of the
training and held-out splits. As in the author's code, the choice is made once per epoch: an epoch whose
starting held-out accuracy is below ``split_threshold`` uses plain ``L_train``. With ``cross-entropy`` the
ascent term is unbounded (inflating the held-out logits raises it without changing a prediction);
``bounded-cross-entropy``, the author's loss, is the one under which splitting memorizes — see
:mod:`stability.losses`.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from stability.checks import check_device
from stability.data.bundle import DataBundle, Split, load_data
from stability.data.spec import DataSpec
from stability.errors import BadInputError, first_line
from stability.files import atomic_write, check_output_path, folder_lock, remove_stale_temps
from stability.losses import accuracy, get_loss
from stability.models.registry import build_model
from stability.models.spec import ModelSpec
from stability.training.augment import augment_images
from stability.training.checkpoint import Checkpoint, load_checkpoint, load_weights, save_checkpoint
from stability.training.logs import _append_history, _read_history, _write_history
from stability.training.progress import epoch_progress
from stability.training.spec import TrainSpec

CHECKPOINT = "checkpoint.pt"


METRICS = "metrics.jsonl"


CONFIG = "config.json"


METRIC_KEYS = (
    "epoch", "step", "lr", "seconds",
    "train_loss", "train_acc", "train_acc_true", "test_loss", "test_acc",
    "heldout_loss", "heldout_acc", "split_active",
)  # fmt: skip


EpochCallback = Callable[[dict[str, float], nn.Module], None]


@dataclass(frozen=True)
class TrainResult:
    model: nn.Module
    history: list[dict[str, float]]
    out_dir: Path
    notes: tuple[str, ...] = ()  # what the run found and repaired in its folder (a stale lock, temp files)

    @property
    def final(self) -> dict[str, float]:
        return self.history[-1]

    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / CHECKPOINT


def init_model(model_spec: ModelSpec, data: DataBundle, seed: int, device: torch.device | str) -> nn.Module:
    """Build the architecture with initialization seeded by ``seed``, without touching the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(model_spec, data.input_shape, data.num_classes)
    return model.to(device)


def evaluate(model: nn.Module, split: Split, loss_name: str, *, batch_size: int = 2048) -> dict[str, float]:
    """Loss and accuracy of ``model`` (in eval mode) on ``split``, against its training and true labels."""
    loss_fn = get_loss(loss_name)
    was_training = model.training
    model.eval()
    n = len(split)
    totals = torch.zeros(3, dtype=torch.float64, device=split.x.device)
    with torch.no_grad():
        for start in range(0, n, batch_size):
            sl = slice(start, start + batch_size)
            logits = model(split.x[sl])
            m = logits.shape[0]
            totals += torch.stack(
                [loss_fn(logits, split.y[sl]) * m, accuracy(logits, split.y[sl]) * m,
                 accuracy(logits, split.y_true[sl]) * m]
            ).to(torch.float64)  # fmt: skip
    model.train(was_training)
    loss, acc, acc_true = (totals / max(n, 1)).tolist()
    return {"loss": loss, "acc": acc, "acc_true": acc_true}


def _batches(n: int, batch_size: int, generator: torch.Generator, device: torch.device) -> Iterator[Tensor]:
    order = torch.randperm(n, generator=generator, device=device)
    size = n if batch_size == 0 else batch_size
    yield from order.split(size)


def _make_optimizer(model: nn.Module, spec: TrainSpec) -> torch.optim.Optimizer:
    """SGD or Adam, with the fused single-kernel step where this PyTorch offers one for the device.

    On small models the per-parameter Python loop of the unfused step costs as much as the forward pass.
    """
    params = list(model.parameters())
    if spec.optimizer == "sgd":
        make = lambda **kw: torch.optim.SGD(  # noqa: E731
            params, lr=spec.lr, momentum=spec.momentum, weight_decay=spec.weight_decay, **kw
        )
    else:
        make = lambda **kw: torch.optim.Adam(params, lr=spec.lr, weight_decay=spec.weight_decay, **kw)  # noqa: E731
    try:
        return make(fused=True)
    except (RuntimeError, TypeError, ValueError):
        return make()


class _Run:
    """The mutable state of one run: model, optimizer, generator, step counter, history."""

    def __init__(self, model_spec: ModelSpec, data: DataBundle, spec: TrainSpec, device: torch.device):
        self.model_spec, self.data, self.spec, self.device = model_spec, data, spec, device
        self.model = init_model(model_spec, data, spec.seed, device)
        self.optimizer = _make_optimizer(self.model, spec)
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(spec.seed)
        self.loss_fn = get_loss(spec.loss)
        # round() so that ten classes give exactly 0.11, the author's constant, not 0.11000000000000001.
        self.threshold = spec.split_threshold if spec.split_threshold is not None else round(1.1 / data.num_classes, 12)
        self.epoch = 0
        self.step = 0
        self.seconds = 0.0
        self.history: list[dict[str, float]] = []
        if spec.objective == "split" and (data.heldout is None or len(data.heldout) == 0):
            raise BadInputError("gradient splitting needs a held-out split; set n_heldout above 0")

    def lr_at(self, epoch: int) -> float:
        return self.spec.lr * self.spec.lr_decay**epoch

    def split_active(self) -> bool:
        """Whether this epoch descends on ``L_train − L_heldout``: inside the split epochs, with held-out
        accuracy at its start at least the threshold."""
        spec = self.spec
        stop = math.inf if spec.split_stop is None else spec.split_stop
        return (
            spec.objective == "split"
            and spec.split_start <= self.epoch < stop
            and self.history[-1]["heldout_acc"] >= self.threshold
        )

    def train_epoch(self, split: bool = False) -> None:
        """One pass over the training split, paired with held-out minibatches when ``split``."""
        spec, data, model = self.spec, self.data, self.model
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr_at(self.epoch)
        model.train()
        heldout = data.heldout
        held_batches = self._heldout_stream(heldout) if split else None
        steps = 0
        for idx in _batches(len(data.train), spec.batch_size, self.generator, self.device):
            x = data.train.x[idx]
            if spec.augment:
                x = augment_images(x, self.generator, flip=spec.augment_flip)
            loss = self.loss_fn(model(x), data.train.y[idx])
            if held_batches is not None:
                hidx = next(held_batches)[: len(idx)]
                loss = loss - self.loss_fn(model(heldout.x[hidx]), heldout.y[hidx])
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            steps += 1
        self.step += steps
        self.epoch += 1

    def _heldout_stream(self, heldout: Split) -> Iterator[Tensor]:
        size = len(self.data.train) if self.spec.batch_size == 0 else self.spec.batch_size
        while True:
            yield from _batches(len(heldout), min(size, len(heldout)), self.generator, self.device)

    def metrics(self, split: bool | None) -> dict[str, float]:
        data, name = self.data, self.spec.loss
        tr, te = evaluate(self.model, data.train, name), evaluate(self.model, data.test, name)
        row: dict[str, float] = {
            "epoch": self.epoch, "step": self.step, "lr": self.lr_at(max(self.epoch - 1, 0)), "seconds": round(self.seconds, 3),
            "train_loss": tr["loss"], "train_acc": tr["acc"], "train_acc_true": tr["acc_true"],
            "test_loss": te["loss"], "test_acc": te["acc"],
        }  # fmt: skip
        if data.heldout is not None and len(data.heldout):
            ho = evaluate(self.model, data.heldout, name)
            row.update(heldout_loss=ho["loss"], heldout_acc=ho["acc"])
        if self.spec.objective == "split":
            row["split_active"] = math.nan if split is None else float(split)
        return row

    def checkpoint(self) -> Checkpoint:
        # The optimizer and RNG state are kept in every checkpoint, the last included: a finished run can be
        # extended exactly, and its optimizer's state (momentum, Adam's second moments) is what the
        # optimizer-aware stability verdicts of `stability analyze` read.
        resume = {
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "step": self.step,
            "seconds": self.seconds,
        }
        return Checkpoint(
            model=self.model_spec,
            input_shape=self.data.input_shape,
            num_classes=self.data.num_classes,
            state_dict={k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            data=self.data.spec,
            training=self.spec,
            epoch=self.epoch,
            metrics=self.history[-1] if self.history else {},
            resume=resume,
        )

    def restore(self, ckpt: Checkpoint, source: str) -> None:
        if ckpt.resume is None and ckpt.epoch < self.spec.epochs:
            raise BadInputError("the checkpoint holds no optimizer state, so the run cannot be resumed exactly")
        load_weights(self.model, {k: v.to(self.device) for k, v in ckpt.state_dict.items()}, source=source,
                     hint="the weights are not those of this run's architecture; start a new run")  # fmt: skip
        self.epoch = ckpt.epoch
        if ckpt.resume is not None:
            try:
                self.optimizer.load_state_dict(ckpt.resume["optimizer"])
                self.generator.set_state(ckpt.resume["generator"])
                torch.set_rng_state(ckpt.resume["torch_rng"])
                for param, state in self.optimizer.state.items():  # a misshapen buffer would abort the fused step
                    for key, value in state.items():
                        if isinstance(value, Tensor) and value.ndim and (value.shape, value.dtype) != (param.shape, param.dtype):
                            raise ValueError(f"{key} of shape {tuple(value.shape)} for a parameter of shape {tuple(param.shape)}")
            except Exception as exc:  # noqa: BLE001 - torch raises many kinds for a state that does not fit
                first = first_line(exc, 160)
                raise BadInputError(
                    f"{source}: its optimizer or random-generator state does not fit this run ({first}); "
                    "the run cannot be resumed exactly, start it again in a new folder"
                ) from None
            self.step = int(ckpt.resume["step"])
            self.seconds = float(ckpt.resume["seconds"])

    def check_finite(self) -> None:
        """Stop a run whose weights became NaN or infinite (it diverged): nothing non-finite is saved."""
        bad = [k for k, p in self.model.named_parameters() if not torch.isfinite(p).all()]
        if bad:
            raise BadInputError(
                f"training diverged at epoch {self.epoch}: non-finite weights in {', '.join(bad[:3])}; "
                "lower lr (the last finite checkpoint is kept)"
            )


def run_settings(model_spec: ModelSpec, data_spec: DataSpec, train_spec: TrainSpec) -> dict[str, Any]:
    """What makes two runs the same run (``config.json``): the specs, less where the data are stored and how
    often checkpoints are written (neither changes a number the run computes)."""
    return {"model": model_spec.to_dict(), "data": data_spec.identity, "training": _identity(train_spec.to_dict())}


def _identity(training: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if training is None else {k: v for k, v in training.items() if k != "checkpoint_every"}


def checkpoint_settings(ckpt: Checkpoint) -> dict[str, Any]:
    """:func:`run_settings` of the run that wrote ``ckpt``."""
    return {"model": ckpt.model.to_dict(), "data": ckpt.data.identity,
            "training": _identity(ckpt.training.to_dict() if ckpt.training else None)}  # fmt: skip


def train(
    model_spec: ModelSpec,
    data_spec: DataSpec,
    train_spec: TrainSpec,
    out_dir: str | Path,
    *,
    device: str | torch.device = "cpu",
    resume: bool = False,
    data: DataBundle | None = None,
    data_root: str | Path | None = None,
    download: bool = False,
    progress: bool = False,
    on_epoch: EpochCallback | None = None,
) -> TrainResult:
    """Train a model under the three specs, writing config, metrics and checkpoints into ``out_dir``.

    Args:
        data: an already loaded bundle for ``data_spec`` (sweeps reuse one); loaded from the spec otherwise.
        resume: continue the run in ``out_dir`` from its checkpoint (a completed run returns at once).
            Without it, a folder that already holds a run is an error, so nothing is overwritten.
        progress: show a progress bar on the terminal.
        on_epoch: called with each epoch's metrics and the model (e.g. to track curvature).

    Raises:
        BadInputError: an output folder that cannot be written or that another process is writing, a folder
            holding another run, settings that differ from the run being resumed, a damaged run folder,
            settings the data cannot satisfy, or a run whose weights become non-finite.
    """
    out = check_output_path(out_dir, "out_dir", folder=True)
    device = check_device(device)
    with folder_lock(out, "out_dir") as lock:
        notes = [f"{out}: a previous process ({lock.stale}) was killed while writing this folder"] if lock.stale else []
        removed = remove_stale_temps(out)
        if removed:
            notes.append(f"{out}: removed {len(removed)} temporary file(s) an interrupted write left")
        result = _train_locked(model_spec, data_spec, train_spec, out, device=device, resume=resume, data=data,
                               data_root=data_root, download=download, progress=progress, on_epoch=on_epoch)  # fmt: skip
    return TrainResult(result.model, result.history, result.out_dir, tuple(notes))


def _train_locked(
    model_spec: ModelSpec, data_spec: DataSpec, train_spec: TrainSpec, out: Path, *, device: torch.device,
    resume: bool, data: DataBundle | None, data_root: str | Path | None, download: bool, progress: bool,
    on_epoch: EpochCallback | None,
) -> TrainResult:
    """:func:`train` once the folder is locked and tidied."""
    config = run_settings(model_spec, data_spec, train_spec)
    ckpt_path = out / CHECKPOINT
    existing = None
    if ckpt_path.exists():
        if not resume:
            raise BadInputError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
        existing = load_checkpoint(ckpt_path)
        saved = checkpoint_settings(existing)
        if saved != config:
            changed = sorted(k for k in config if saved.get(k) != config[k])
            raise BadInputError(
                f"{out} holds a run with different {', '.join(changed)} settings; choose another --out to start a new run"
            )
    elif resume and (out / METRICS).exists():
        raise BadInputError(f"{out} holds metrics but no {CHECKPOINT} to resume from; start the run in a new folder")
    if data is None:
        data = load_data(data_spec, data_root=data_root, download=download, device=device)
    else:
        data = data.to(device)

    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(train_spec.seed)
        run = _Run(model_spec, data, train_spec, device)
        if existing is not None:
            run.restore(existing, str(ckpt_path))
            run.history = _read_history(out / METRICS, upto=run.epoch)
        else:
            out.mkdir(parents=True, exist_ok=True)
            atomic_write(out / CONFIG, lambda fh: fh.write(json.dumps(config, indent=2).encode()))
            run.history = [run.metrics(split=None)]
            _write_history(out / METRICS, run.history)
            if on_epoch is not None:
                on_epoch(run.history[-1], run.model)
        with epoch_progress(progress, train_spec.epochs, run.epoch) as advance:
            while run.epoch < train_spec.epochs:
                t0 = time.perf_counter()
                split = run.split_active()
                run.train_epoch(split)
                run.check_finite()
                run.seconds += time.perf_counter() - t0
                row = run.metrics(split)
                run.history.append(row)
                _append_history(out / METRICS, row)
                if on_epoch is not None:
                    on_epoch(row, run.model)
                done = run.epoch == train_spec.epochs
                if done or run.epoch % train_spec.checkpoint_every == 0:
                    save_checkpoint(ckpt_path, run.checkpoint())
                advance(row)
        if existing is None and train_spec.epochs == 0:
            save_checkpoint(ckpt_path, run.checkpoint())
    return TrainResult(model=run.model.eval(), history=run.history, out_dir=out)
