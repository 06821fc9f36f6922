"""The options of an analysis, as plain dataclasses: what the command line's flags map onto.

They import no torch, so ``stability analyze --help`` (and a refusal of a missing file) answers at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from stability.checks import (
    check_choice,
    check_chunk_size,
    check_count,
    check_optional_positive_int,
    check_positive,
    check_positive_int,
)
from stability.config import MAX_SEED
from stability.errors import BadInputError

MAX_EXACT_OUTPUTS = 100  # above this many outputs, Jacobian norms are estimated instead of computed exactly


@dataclass(frozen=True)
class AnalysisOptions:
    """Knobs of :func:`analyze_model`.

    Attributes:
        max_samples: analyze at most this many samples per split (a seeded subset); ``None``: all.
        chunk_size: samples per ``vmap`` chunk (bounds memory; ``None``: all at once).
        sigma: noise scale for the finite-noise measures, in the model's input units (after preprocessing).
        noise_samples: noisy copies per sample.
        spectral_iters: power-iteration cap for the spectral norm (tolerance ``spectral_tol``), used when
            Jacobian norms are estimated.
        frobenius: ``exact`` (the full Jacobian, ``C`` VJPs per sample, gives both norms exactly),
            ``estimate`` (random projections, ``probes`` VJPs per sample, and power iteration for the
            spectral norm), or ``auto`` (exact up to :data:`MAX_EXACT_OUTPUTS` outputs).
        seed: seeds the subset and every random draw.
    """

    max_samples: int | None = 1000
    chunk_size: int | None = None
    sigma: float = 0.1
    noise_samples: int = 16
    spectral_iters: int = 100
    spectral_tol: float = 1e-4
    frobenius: str = "auto"
    probes: int = 32
    seed: int = 0

    def __post_init__(self) -> None:
        check_optional_positive_int("max_samples", self.max_samples)
        check_chunk_size(self.chunk_size)
        check_positive("sigma", self.sigma)
        for name in ("noise_samples", "spectral_iters", "probes"):
            check_positive_int(name, getattr(self, name))
        check_positive("spectral_tol", self.spectral_tol)
        check_choice("frobenius", self.frobenius, ("auto", "exact", "estimate"))
        check_count("seed", self.seed, 0, most=MAX_SEED)


@dataclass(frozen=True)
class CurvatureOptions:
    """Budgets of :func:`analyze_curvature`.

    Attributes:
        subset: training samples the curvature is evaluated on (seeded; the edge-of-stability code uses 5,000).
        top_k, tol, max_iter: Lanczos for the top eigenvalues (relative residual tolerance, product cap).
        trace_probes: Hutchinson probes for ``tr H``.
        density_probes, density_steps: stochastic Lanczos quadrature budget.
        nonuniformity_subset: ``None`` (the default): ``s``, the SGD statements' ``H`` and their noise factor all
            use every training sample, as Wu, Ma & E average over all n. A number asks for a seeded subset
            of that many samples for all three (each Σ-product costs two per-sample HVPs per sample); the
            report then gives the subset size and ``s`` on a second, disjoint subset of the same size.
        fixed_point_samples: training samples whose fixed-point displacement ``‖dθ*/dx_i‖`` is solved for
            (seeded; ``C`` MINRES right-hand sides each); 0 skips it.
        fixed_point_iter: MINRES steps per solve for the displacement (two solves: range projection, then ``H⁺``).
        chunk_size: samples per chunk in every product (memory); ``None``: all at once.
        seed: subset and probes.
    """

    subset: int = 1000
    top_k: int = 3
    tol: float = 1e-3
    max_iter: int = 100
    trace_probes: int = 32
    density_probes: int = 4
    density_steps: int = 40
    nonuniformity_subset: int | None = None
    fixed_point_samples: int = 2
    fixed_point_iter: int = 50
    chunk_size: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("subset", "top_k", "max_iter", "density_probes", "density_steps", "fixed_point_iter"):
            check_positive_int(name, getattr(self, name))
        check_optional_positive_int("nonuniformity_subset", self.nonuniformity_subset)
        check_count("fixed_point_samples", self.fixed_point_samples, 0)
        check_count("trace_probes", self.trace_probes, 2, "for a standard error")
        check_positive("tol", self.tol)
        check_chunk_size(self.chunk_size)
        check_count("seed", self.seed, 0, most=MAX_SEED)


@dataclass(frozen=True)
class BareStateDict:
    """What a bare ``state_dict`` (weights alone) needs to be analyzed.

    Attributes:
        model: for a model of your own: ``package.module:factory``, a callable returning the
            ``nn.Module`` (the module is imported from the current folder or ``sys.path``).
        arch: for a registry architecture instead: its name (see ``stability list``).
        arch_kwargs: the registry architecture's keyword arguments.
        dataset: the dataset the model was trained on (its clean train and test splits are analyzed).
        preprocess: the input preprocessing the model was trained with: ``none`` (pixels in [0, 1]),
            ``standardize`` (per-channel, the default, as ``stability train``) or ``whiten`` (per image).
    """

    model: str | None = None
    arch: str | None = None
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    dataset: str | None = None
    preprocess: str = "standardize"

    def __post_init__(self) -> None:
        if self.model is not None and self.arch is not None:
            raise BadInputError("model (your factory) and arch (a registry name) both name the architecture; pass one")

    @property
    def complete(self) -> bool:
        return (self.model is not None or self.arch is not None) and self.dataset is not None
