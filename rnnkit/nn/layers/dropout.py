"""Inverted dropout, the one implementation every model uses.

In training ``y = x * m`` with ``m = Bernoulli(1 - p) / (1 - p)`` elementwise, so the expected
value of ``y`` is ``x`` and evaluation is the identity.  Backward: ``dx = dy * m``.

The draws come from an explicit ``numpy.random.Generator``: one uniform number per element of
``x``, drawn in the precision of ``x`` (float32 for float32 arrays, else float64), kept where it
is below ``1 - p``.  The same generator state therefore gives the same mask whichever caller
asks for it (the :class:`Dropout` layer, the language model, the seq2seq model).

Locked (variational) dropout of a sequence ``x`` (B, T, D), ``locked=True``, draws one
(B, 1, D) mask and uses it at every step (Gal & Ghahramani 2016): the backward is the same
product, broadcast over time.

>>> import numpy as np
>>> x = np.ones((2, 4))
>>> y, m = dropout(x, 0.5, np.random.default_rng(0))
>>> sorted(set(m.ravel().tolist()))   # kept elements are scaled by 1 / (1 - p)
[0.0, 2.0]
>>> bool(np.array_equal(y, x * m)), dropout(x, 0.5, None, training=False)[1] is None
(True, True)
>>> dropout_backward(np.ones((2, 4)), m).tolist() == m.tolist()
True
"""

from __future__ import annotations

import numpy as np

from .. import init as initializers
from ..module import Module

__all__ = ["Dropout", "dropout", "dropout_backward", "dropout_mask"]


def dropout_mask(shape: tuple, p: float, rng: np.random.Generator, dtype) -> np.ndarray:
    """The scaled keep mask ``Bernoulli(1 - p) / (1 - p)`` of ``shape`` in ``dtype``."""
    dtype = np.dtype(dtype)
    m = rng.random(shape, dtype=np.float32 if dtype == np.float32 else np.float64)
    keep = 1.0 - p
    if m.dtype == dtype:
        np.less(m, keep, out=m)  # 1 where kept, else 0, in place
    else:
        m = (m < keep).astype(dtype)
    m *= 1.0 / keep
    return m


def dropout(x: np.ndarray, p: float, rng: np.random.Generator | None, *,
            training: bool = True, locked: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """``(y, mask)``: inverted dropout of ``x`` with drop probability ``p``; ``locked`` with
    ``x`` (B, T, D): one mask (B, 1, D) for every step.

    ``mask`` is what :func:`dropout_backward` takes; it is ``None`` (and ``y`` is ``x`` itself)
    when ``training`` is False or ``p`` is 0, in which case ``rng`` may be ``None``.
    """
    if not training or p == 0.0:
        return x, None
    shape = (x.shape[0], 1, *x.shape[2:]) if locked and x.ndim == 3 else x.shape
    m = dropout_mask(shape, p, rng, x.dtype)
    return x * m, m


def dropout_backward(dy: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """``dx = dy * mask`` (``dy`` itself when the forward pass dropped nothing)."""
    return dy if mask is None else dy * mask


class Dropout(Module):
    """``Dropout(p)``: :func:`dropout` as a layer that follows ``train()`` / ``eval()``.

    Randomness comes from ``rng`` given to :meth:`forward`, else from the Generator held by the
    layer (``rng`` at construction: a Generator, a seed, or ``None`` for fresh entropy).
    """

    def __init__(self, p: float = 0.5, rng=None):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"Dropout: expected p in [0, 1), got {p!r}")
        self.p = p
        self.rng = initializers.as_rng(rng)

    def forward(self, x, rng: np.random.Generator | None = None, locked: bool = False):
        """``(y, mask)``; ``locked``: see :func:`dropout`."""
        return dropout(x, self.p, self.rng if rng is None else rng, training=self.training,
                       locked=locked)

    def backward(self, dy, m):
        return dropout_backward(dy, m)
