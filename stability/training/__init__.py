"""Training runs: the spec of how a model is trained, the loop, its logs and its checkpoints.

- :mod:`.spec` — :class:`TrainSpec`.
- :mod:`.train` — the training loop, ``train(model_spec, data_spec, train_spec, out)``: device-resident data,
  the papers' objectives, resumable run folders. Import the function from its module,
  ``from stability.training.train import train``: the package attribute ``train`` is the module.
- :mod:`.augment` — random crops and flips of image batches.
- :mod:`.logs` — the per-epoch JSON-lines files of a run folder.
- :mod:`.checkpoint` — checkpoints that load without running code.

Names load on first use, so ``stability.training.spec`` imports without torch (the command line's start-up).
"""

from __future__ import annotations

from typing import Any

from stability import load_export

_EXPORTS = {
    "Checkpoint": "checkpoint", "build_model_from_checkpoint": "checkpoint", "load_checkpoint": "checkpoint",
    "save_checkpoint": "checkpoint", "read_metrics": "logs", "TrainResult": "train", "evaluate": "train",
    "TrainSpec": "spec",
}  # fmt: skip

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    return load_export(__name__, _EXPORTS, name)
