"""Exceptions that carry a one-line message: what is wrong and how to fix it.

The command line turns every :class:`BadInputError` into that line on stderr and exit code 2; library
users catch them like any ``ValueError``.
"""

from __future__ import annotations


class StabilityError(Exception):
    """Base class of the toolkit's own errors."""


class BadInputError(StabilityError, ValueError):
    """Input the user can fix: an unreadable file, an unknown name, a shape that does not fit."""


class DatasetError(BadInputError):
    """A dataset is missing, malformed, or fails its checksum."""


class CheckpointError(BadInputError):
    """A checkpoint is unreadable, untrusted, truncated, or does not fit its own specification."""


class ArchitectureError(BadInputError):
    """An unknown architecture, or keyword arguments it does not accept."""


class NonDeterministicModelError(StabilityError, ValueError):
    """A measure needs the model's output to be a deterministic function of its parameters and inputs."""


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of ``exc``'s message (its type's name when it has none), cut to ``limit`` characters:
    what a one-line error quotes of an exception it wraps."""
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:limit]
