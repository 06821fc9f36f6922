"""Epoch time of our training loop vs a ``DataLoader`` over the same tensors (ratio in one run).

Ours keeps the whole dataset on the training device and draws each minibatch by indexing with a slice of
one random permutation. The baseline is the common PyTorch idiom: ``DataLoader(TensorDataset(x, y),
shuffle=True)``, which fetches samples one by one and collates them. Both do the same optimizer steps on
the same model; only the data path differs.

    python -m benchmarks.bench_training_loop [--device cpu] [--epochs 5] [--batch-size 64]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils.data import DataLoader, TensorDataset

from stability.data.bundle import load_data
from stability.data.spec import DataSpec
from stability.models.spec import ModelSpec
from stability.training.spec import TrainSpec
from stability.training.train import _batches, _Run

ARCHS = {"mlp": ModelSpec("mlp", {"widths": [512]}), "convnet": ModelSpec("convnet", {})}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _dataloader_epoch(run: _Run, loader: DataLoader) -> None:
    model, opt, loss_fn = run.model, run.optimizer, run.loss_fn
    model.train()
    for x, y in loader:
        loss = loss_fn(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def time_epochs(ours: _Run, base: _Run, epochs: int) -> tuple[float, float]:
    """Median seconds per epoch of each loop, alternating epochs so both see the same machine load."""
    loader = DataLoader(TensorDataset(base.data.train.x, base.data.train.y), batch_size=base.spec.batch_size,
                        shuffle=True)  # fmt: skip
    t_ours, t_base = [], []
    for _ in range(epochs + 1):  # the first epoch of each warms up
        for times, step in ((t_ours, ours.train_epoch), (t_base, lambda: _dataloader_epoch(base, loader))):
            _sync(ours.device)
            t0 = time.perf_counter()
            step()
            _sync(ours.device)
            times.append(time.perf_counter() - t0)
    return statistics.median(t_ours[1:]), statistics.median(t_base[1:])


def time_data_path(run: _Run, epochs: int) -> tuple[float, float]:
    """Median seconds per epoch spent only producing minibatches: our index batching vs the DataLoader."""
    data, bs = run.data, run.spec.batch_size
    loader = DataLoader(TensorDataset(data.train.x, data.train.y), batch_size=bs, shuffle=True)
    ours, base = [], []
    for _ in range(epochs + 1):
        t0 = time.perf_counter()
        for idx in _batches(len(data.train), bs, run.generator, run.device):
            data.train.x[idx], data.train.y[idx]
        t1 = time.perf_counter()
        for _batch in loader:
            pass
        t2 = time.perf_counter()
        ours.append(t1 - t0)
        base.append(t2 - t1)
    return statistics.median(ours[1:]), statistics.median(base[1:])


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--epochs", type=int, default=9)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    data = load_data(DataSpec(dataset="digits"), device=device)
    spec = TrainSpec(optimizer="sgd", lr=0.01, batch_size=args.batch_size, epochs=args.epochs)
    rows = []
    run = _Run(ARCHS["mlp"], data, spec, device)
    ours, base = time_data_path(run, args.epochs)
    rows.append({"arch": "(data path only)", "ours_s": ours, "dataloader_s": base, "speedup": base / ours})
    for name, model_spec in ARCHS.items():
        ours, base = time_epochs(_Run(model_spec, data, spec, device), _Run(model_spec, data, spec, device), args.epochs)
        rows.append({"arch": name, "ours_s": ours, "dataloader_s": base, "speedup": base / ours})
    print(f"digits, {len(data.train)} training samples, batch {args.batch_size}, device {device}, "
          f"torch threads {torch.get_num_threads()}; median epoch time over {args.epochs} epochs")  # fmt: skip
    print("| arch | ours (s/epoch) | DataLoader (s/epoch) | speed-up |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['arch']} | {r['ours_s']:.4f} | {r['dataloader_s']:.4f} | {r['speedup']:.1f}x |")
    return rows


if __name__ == "__main__":
    main()
