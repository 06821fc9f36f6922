"""Training runs: the spec of how a model is trained, the loop, its logs and its checkpoints.

- :mod:`.spec` — :class:`TrainSpec`.
- :mod:`.loop` — :func:`train`: device-resident data, the papers' objectives, resumable run folders.
- :mod:`.logs` — the per-epoch JSON-lines files of a run folder.
- :mod:`.checkpoint` — checkpoints that load without running code.
"""

from stability.training.checkpoint import (
    Checkpoint,
    build_model_from_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from stability.training.logs import read_metrics
from stability.training.loop import TrainResult, evaluate, train
from stability.training.spec import TrainSpec

__all__ = [
    "Checkpoint", "TrainResult", "TrainSpec", "build_model_from_checkpoint", "evaluate", "load_checkpoint",
    "read_metrics", "save_checkpoint", "train",
]
