"""The analysis of a trained model: typed results, one JSON serializer, the table and the figures.

- :mod:`.splits` — accuracy, loss and every input-sensitivity measure, per split.
- :mod:`.curvature` — curvature, stability verdicts and bounds on the training split.
- :mod:`.summary` — summary statistics of per-sample values.
- :mod:`.report` — a report of one checkpoint: JSON and the comparison table.
- :mod:`.figures` — the report's figures.
"""

from stability.analysis.curvature import (
    Bounds,
    CurvatureAnalysis,
    CurvatureOptions,
    CurvatureSpectrum,
    UpdateSummary,
    analyze_curvature,
)
from stability.analysis.splits import Analysis, AnalysisOptions, SplitAnalysis, analyze_model
from stability.analysis.summary import summarize

__all__ = [
    "Analysis", "AnalysisOptions", "Bounds", "CurvatureAnalysis", "CurvatureOptions", "CurvatureSpectrum",
    "SplitAnalysis", "UpdateSummary", "analyze_curvature", "analyze_model", "summarize",
]
