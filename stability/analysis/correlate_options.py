"""The options of ``stability correlate``, as a plain dataclass: what its flags map onto.

Torch- and NumPy-free, so ``stability correlate --help`` and a refusal of a bad run folder answer at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from stability.checks import check_choice, check_count, check_range

GAPS = ("accuracy", "loss")


@dataclass(frozen=True)
class CorrelateOptions:
    """How the measures are set against the generalization gap (:func:`stability.analysis.correlate.correlate`).

    Attributes:
        gap: ``accuracy`` (train − test accuracy, from the last row of each run's metrics.jsonl) or ``loss``
            (test − train loss).
        resamples: bootstrap resamples of the runs for the intervals of τ, ψ and Ψ (0: no intervals).
        cmi_resamples: bootstrap resamples for the interval of the conditional mutual information (its cost
            is resamples × measures × conditioning sets × runs²; 0: no interval).
        max_conditioning: the largest set of hyperparameters the mutual information is conditioned on
            (Jiang et al. 2020 use 2).
        confidence: the level of the percentile bootstrap intervals.
        seed: seeds the bootstrap resamples.
    """

    gap: str = "accuracy"
    resamples: int = 1000
    cmi_resamples: int = 200
    max_conditioning: int = 2
    confidence: float = 0.95
    seed: int = 0

    def __post_init__(self) -> None:
        check_choice("gap", self.gap, GAPS)
        check_count("resamples", self.resamples, 0)
        check_count("cmi_resamples", self.cmi_resamples, 0)
        check_count("max_conditioning", self.max_conditioning, 0)
        check_range("confidence", self.confidence, 0.5, 0.999)
        check_count("seed", self.seed, 0)
