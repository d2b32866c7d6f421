"""Exceptions raised by rnnkit.

Every error a user can cause derives from :class:`RnnkitError`, so the CLI can print it as one
line.  Shape and value problems also derive from :class:`ValueError` so ordinary Python code
can catch them the usual way.
"""

from __future__ import annotations


class RnnkitError(Exception):
    """Base class of every error rnnkit raises on purpose."""


class ShapeError(RnnkitError, ValueError):
    """An array has the wrong number of dimensions or the wrong size."""


class DataError(RnnkitError, ValueError):
    """An input file or text cannot be used (missing, empty, binary, wrong encoding, ...)."""


class CheckpointError(RnnkitError):
    """A checkpoint is missing, corrupt, truncated, or of the wrong kind or version."""


class NonFiniteError(RnnkitError, FloatingPointError):
    """A loss or gradient became NaN or infinite during training."""


class ConfigError(RnnkitError, ValueError):
    """A configuration has an unknown key or a value of the wrong type."""
