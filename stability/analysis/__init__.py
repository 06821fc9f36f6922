"""The analysis of a trained model: typed results, one JSON serializer, the table and the figures.

- :mod:`.options` — the analysis options (what ``stability analyze``'s flags map onto), torch-free.
- :mod:`.splits` — accuracy, loss and every input-sensitivity measure, per split.
- :mod:`.curvature` — curvature, stability verdicts and bounds on the training split.
- :mod:`.summary` — summary statistics of per-sample values.
- :mod:`.report` — a report of one checkpoint: JSON and the comparison table.
- :mod:`.figures` — the report's figures.
- :mod:`.run` — ``analyze(model, x, y)`` and ``analyze_checkpoint``: one code path for both.

Names load on first use, so ``stability.analysis.options`` imports without torch (the command line's start-up).
"""

from __future__ import annotations

from typing import Any

from stability import load_export

_EXPORTS = {
    "AnalysisOptions": "options", "CurvatureOptions": "options", "BareStateDict": "options",
    "Analysis": "splits", "SplitAnalysis": "splits", "analyze_model": "splits",
    "Bounds": "curvature", "CurvatureAnalysis": "curvature", "CurvatureSpectrum": "curvature",
    "UpdateSummary": "curvature", "analyze_curvature": "curvature",
    "summarize": "summary", "Report": "report", "analyze": "run", "analyze_checkpoint": "run",
}  # fmt: skip

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    return load_export(__name__, _EXPORTS, name)


def __dir__() -> list[str]:
    return __all__
