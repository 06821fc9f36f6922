"""``analyze(model, x, y)``: the analysis report of any model on any batch, and of a checkpoint on its data.

Two entries, one code path (:func:`analyze_data`):

- :func:`analyze` takes a plain ``nn.Module`` and tensors: no spec, no checkpoint, no command line;
- :func:`analyze_checkpoint` takes what :func:`open_weights` read from a file — a checkpoint written by
  ``stability train`` (which knows its architecture and its exact data), or a bare ``state_dict`` completed
  by a :class:`BareStateDict` (a registry architecture or the user's own ``package.module:factory``, a
  dataset and its preprocessing) — and rebuilds the data it names.

Cost: that of :func:`~stability.analysis.splits.analyze_model` plus, with curvature, that of
:func:`~stability.analysis.curvature.analyze_curvature`; a single-sample forward pass checks that the
inputs fit the model first.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from stability.analysis.curvature import analyze_curvature, optimizer_setting
from stability.analysis.options import AnalysisOptions, BareStateDict, CurvatureOptions
from stability.analysis.report import Report
from stability.analysis.splits import analyze_model
from stability.checks import check_device
from stability.data.bundle import DataBundle, Split, load_data
from stability.data.spec import DataSpec
from stability.dynamics.optimizers import OptimizerSetting
from stability.errors import BadInputError, first_line
from stability.models.spec import ModelSpec
from stability.training.checkpoint import (
    Checkpoint,
    build_model_from_checkpoint,
    check_weights,
    checkpoint_from_dict,
    is_state_dict,
    load_weights,
    read_checkpoint_file,
)
from stability.training.spec import TrainSpec


@dataclass(frozen=True)
class Weights:
    """A model read from a file, and the data it is to be analyzed on."""

    source: str
    model: nn.Module
    data: DataSpec
    spec: ModelSpec | None = None
    training: TrainSpec | None = None
    epoch: int | None = None
    model_source: str | None = None
    resume: Mapping[str, Any] | None = None


def load_factory(text: str) -> Callable[[], Any]:
    """``package.module:factory`` -> the callable it names, with a one-line error for each way it fails."""
    module_name, sep, attr = text.partition(":")
    if not sep or not module_name or not attr.isidentifier():
        raise BadInputError(f"model {text!r} is not of the form package.module:factory; name a callable that returns the nn.Module")
    here = os.getcwd()
    added = here not in sys.path and "" not in sys.path
    if added:  # a console script does not put the current folder on sys.path; `python -m` does
        sys.path.insert(0, here)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BadInputError(f"model {text!r}: cannot import {module_name} ({exc}); run from the folder that holds it or add it to PYTHONPATH") from None
    except Exception as exc:  # noqa: BLE001  (the user's module failed while importing)
        raise BadInputError(f"model {text!r}: importing {module_name} raised {type(exc).__name__}: {first_line(exc)}") from None
    finally:
        if added:
            sys.path.remove(here)
    factory = getattr(module, attr, None)
    if factory is None or not callable(factory):
        what = "has no attribute" if factory is None else "has a non-callable"
        raise BadInputError(f"model {text!r}: {module_name} {what} {attr!r}; name a function or class that returns the nn.Module")
    return factory


def build_from_factory(text: str, state_dict: dict[str, Tensor], *, source: str) -> nn.Module:
    """Call the factory ``text`` names, check it returned an ``nn.Module``, load ``state_dict`` strictly."""
    factory = load_factory(text)
    try:
        model = factory()
    except Exception as exc:  # noqa: BLE001  (the user's factory failed)
        raise BadInputError(f"model {text!r}: calling {text.partition(':')[2]}() raised {type(exc).__name__}: {first_line(exc)}; it must take no arguments") from None
    if not isinstance(model, nn.Module):
        raise BadInputError(f"model {text!r} returned a {type(model).__name__}, not a torch.nn.Module; return the model itself")
    load_weights(model, state_dict, source=source, hint=f"check that {text} builds the model these weights came from")
    return model.eval()




def open_weights(
    path: str | Path, *, bare: BareStateDict = BareStateDict(), unsafe_pickle: bool = False,
    data_root: str | Path | None = None, download: bool = False,
) -> Weights:
    """Read a checkpoint, or a bare state_dict completed by ``bare``, and build its model (on the CPU).

    Every refusal is one line that names the file."""
    try:
        return _open_weights(path, bare=bare, unsafe_pickle=unsafe_pickle, data_root=data_root, download=download)
    except BadInputError as exc:
        text = str(exc)
        raise type(exc)(text if str(path) in text else f"{path}: {text}") from None


def _open_weights(
    path: str | Path, *, bare: BareStateDict, unsafe_pickle: bool, data_root: str | Path | None, download: bool,
) -> Weights:
    obj = read_checkpoint_file(path, unsafe_pickle=unsafe_pickle)
    source = str(path)
    if isinstance(obj, nn.Module):  # a whole pickled model (only readable with --unsafe-pickle)
        if bare.dataset is None:
            raise BadInputError(f"{source} is a whole pickled {type(obj).__name__}; pass --dataset (and --preprocess) "
                                "to name the data it was trained on")  # fmt: skip
        check_weights(obj.state_dict(), obj.state_dict(), source=source)
        data = DataSpec(dataset=bare.dataset, preprocess=bare.preprocess, data_root=str(data_root) if data_root else None)
        return Weights(source=source, model=obj.eval(), data=data, model_source=f"a pickled {type(obj).__name__}")
    if not is_state_dict(obj) or not bare.complete:
        # A bare state_dict without an architecture and a dataset is refused here, naming what it needs.
        ckpt = checkpoint_from_dict(obj, source=source)
        return Weights(source=source, model=build_model_from_checkpoint(ckpt), data=ckpt.data, spec=ckpt.model,
                       training=ckpt.training, epoch=ckpt.epoch, resume=ckpt.resume)  # fmt: skip
    data = DataSpec(dataset=bare.dataset, preprocess=bare.preprocess, data_root=str(data_root) if data_root else None)
    if bare.model is not None:
        model = build_from_factory(bare.model, dict(obj), source=source)
        return Weights(source=source, model=model, data=data, model_source=bare.model)
    shapes = load_data(data, data_root=data_root, download=download)
    ckpt = Checkpoint(model=ModelSpec(bare.arch, bare.arch_kwargs), input_shape=shapes.input_shape,
                      num_classes=shapes.num_classes, state_dict=dict(obj), data=data)  # fmt: skip
    return Weights(source=source, model=build_model_from_checkpoint(ckpt), data=data, spec=ckpt.model)


def check_fits(model: nn.Module, data: DataBundle, *, inputs: str = "x") -> None:
    """One sample through ``model``: it must accept the inputs and give ``(1, C)`` logits, ``C`` >= classes."""
    x = data.train.x[:1]
    try:
        with torch.no_grad():
            out = model(x)
    except Exception as exc:  # noqa: BLE001  (any failure of the user's forward pass is a misfit)
        raise BadInputError(
            f"the model does not accept {inputs} of shape {tuple(x.shape[1:])} per sample "
            f"({type(exc).__name__}: {first_line(exc)}); pass the inputs the model was trained on"
        ) from None
    if not isinstance(out, Tensor) or out.ndim != 2 or out.shape[1] < data.num_classes:
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise BadInputError(f"the model must return logits of shape (batch, classes >= {data.num_classes}), got {shape}")


def analyze_data(
    model: nn.Module, data: DataBundle, *, source: str, loss: str = "cross-entropy", lr: float | None = None,
    batch_size: int | None = None, options: AnalysisOptions = AnalysisOptions(),
    curvature: CurvatureOptions | None = CurvatureOptions(), splits: tuple[str, ...] = ("train", "test"),
    advance: Callable[[str], None] = lambda label: None, about: Mapping[str, Any] | None = None,
    optimizer: OptimizerSetting | None = None,
) -> Report:
    """The report of ``model`` on ``data``; ``about`` fills the :class:`Report`'s specs and provenance
    (``model``, ``data``, ``training``, ``epoch``, ``model_source``).

    ``lr`` and ``batch_size`` (0: full batch, ``None``: full batch) are the step and minibatch size the
    curvature's stability verdicts are for; ``curvature=None`` skips curvature, verdicts and bounds.
    """
    if curvature is not None and lr is None:
        raise BadInputError("the stability verdicts need a step size: lr must be given (and batch_size, 0 = full batch)")
    analysis = analyze_model(model, data, loss_name=loss, options=options, splits=splits, advance=advance)
    curv = None
    if curvature is not None:
        advance("curvature")
        curv = analyze_curvature(model, data.train, loss=loss, lr=lr, batch_size=batch_size or 0, options=curvature,
                                 optimizer=optimizer)  # fmt: skip
    return Report(source=source, analysis=analysis, curvature=curv, **(about or {}))


def analyze_checkpoint(
    weights: Weights, *, data_root: str | Path | None = None, download: bool = False, device: str = "cpu",
    lr: float | None = None, batch_size: int | None = None, options: AnalysisOptions = AnalysisOptions(),
    curvature: CurvatureOptions | None = CurvatureOptions(), advance: Callable[[str], None] = lambda label: None,
) -> Report:
    """The report of what :func:`open_weights` read, on the data it names (rebuilt exactly).

    ``lr`` and ``batch_size`` default to the checkpoint's training spec; a bare state_dict needs ``lr``
    for the verdicts.
    """
    torch_device = check_device(device)
    model = weights.model.to(torch_device)
    data = load_data(weights.data, data_root=data_root, download=download)
    check_fits(model, data.to(torch_device), inputs=f"{weights.data.dataset} inputs")
    training = weights.training
    optimizer = optimizer_setting(training, weights.resume, [k for k, _ in model.named_parameters()], lr=lr)
    return analyze_data(
        model, data, source=weights.source, loss=training.loss if training else "cross-entropy",
        lr=lr if lr is not None else (training.lr if training else None),
        batch_size=batch_size if batch_size is not None else (training.batch_size if training else 0),
        options=options, curvature=curvature, advance=advance,
        about={"model": weights.spec, "data": weights.data, "training": training, "epoch": weights.epoch,
               "model_source": weights.model_source},
        optimizer=optimizer,
    )  # fmt: skip


def analyze(
    model: nn.Module, x: Tensor, y: Tensor, *, x_test: Tensor | None = None, y_test: Tensor | None = None,
    loss: str = "cross-entropy", lr: float | None = None, batch_size: int | None = None,
    options: AnalysisOptions = AnalysisOptions(), curvature: bool | CurvatureOptions = True,
) -> Report:
    """Analyze a plain ``nn.Module`` on the batch it was trained on (and a test batch), no spec needed.

    Args:
        model: any ``nn.Module`` mapping ``x`` to logits ``(N, C)``; put in eval mode.
        x, y: training inputs ``(N, *input_shape)`` and integer labels ``(N,)``, exactly as the model was
            trained on them (same preprocessing).
        x_test, y_test: a test batch; the report then has a test split and the generalization gap.
        loss: the training loss (``cross-entropy``, ``mse``, ``bounded-cross-entropy``).
        lr, batch_size: the step size and minibatch size (0 or ``None``: full batch) of the stability
            verdicts; ``lr`` is required unless ``curvature=False``.
        options: budgets of the per-split measures; ``curvature``: ``True`` (default budgets), ``False``
            (skip curvature, verdicts and bounds) or a :class:`CurvatureOptions`.

    Returns:
        a :class:`Report` with ``source`` the model's class name (``report.to_json()`` is the JSON report).

    Example:
        >>> report = analyze(model, x, y, x_test=xt, y_test=yt, lr=0.1, batch_size=64)  # doctest: +SKIP
        >>> report.analysis.splits["train"].accuracy  # doctest: +SKIP
    """
    if not isinstance(model, nn.Module):
        raise BadInputError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if (x_test is None) != (y_test is None):
        raise BadInputError("x_test and y_test go together; pass both or neither")
    device = next(model.parameters()).device
    train = _split(x, y, "x", "y", device)
    test = _split(x_test, y_test, "x_test", "y_test", device) if x_test is not None else None
    num_classes = int(max(train.y.max(), test.y.max() if test is not None else 0)) + 1
    bundle = DataBundle(spec=None, train=train, test=test, heldout=None, num_classes=num_classes,
                        input_shape=tuple(train.x.shape[1:]))  # fmt: skip
    check_fits(model, bundle)
    options_c = CurvatureOptions() if curvature is True else (curvature or None)
    return analyze_data(model, bundle, source=type(model).__qualname__, loss=loss, lr=lr, batch_size=batch_size,
                        options=options, curvature=options_c, splits=("train", "test") if test is not None else ("train",))  # fmt: skip


def _split(x: Any, y: Any, x_name: str, y_name: str, device: torch.device) -> Split:
    if not isinstance(x, Tensor) or not x.is_floating_point() or x.ndim < 2:
        raise BadInputError(f"{x_name} must be a floating-point tensor (N, *input_shape), got {_describe(x)}")
    if not isinstance(y, Tensor) or y.dtype != torch.int64 or y.shape != x.shape[:1]:
        raise BadInputError(f"{y_name} must be an int64 tensor of shape ({x.shape[0]},) with class labels, got {_describe(y)}")
    if len(y) == 0 or int(y.min()) < 0:
        raise BadInputError(f"{y_name} must hold at least one label, each a class index >= 0")
    return Split(x=x.to(device), y=y.to(device), y_true=y.to(device), index=torch.arange(len(y), device=device))


def _describe(t: Any) -> str:
    return f"{t.dtype} of shape {tuple(t.shape)}" if isinstance(t, Tensor) else type(t).__name__
