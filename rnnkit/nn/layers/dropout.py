"""Inverted dropout: in training, ``y = x * m / (1 - p)`` with ``m ~ Bernoulli(1 - p)``;
identity in evaluation.  Backward: ``dx = dy * m / (1 - p)``.  Locked (variational) dropout of
a sequence ``x`` (B, T, D) draws one (B, 1, D) mask and uses it at every step.
"""

from __future__ import annotations

import numpy as np

from .. import init as initializers
from ..module import Module


class Dropout(Module):
    """``Dropout(p)``; randomness from an explicit Generator (``rng``) held or passed in."""

    def __init__(self, p: float = 0.5, rng=None):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"Dropout: expected p in [0, 1), got {p!r}")
        self.p = p
        self.rng = initializers.as_rng(rng)

    def forward(self, x, rng: np.random.Generator | None = None, locked: bool = False):
        """``(y, mask)``; ``locked`` with ``x`` (B, T, D): one mask per row for every step."""
        if not self.training or self.p == 0.0:
            return x, None
        rng = self.rng if rng is None else rng
        keep = 1.0 - self.p
        shape = (x.shape[0], 1, *x.shape[2:]) if locked and x.ndim == 3 else x.shape
        m = rng.random(shape, dtype=np.float32 if x.dtype == np.float32 else np.float64)
        m = (m < keep).astype(x.dtype)
        m *= 1.0 / keep
        return x * m, m

    def backward(self, dy, m):
        return dy if m is None else dy * m
