"""Embedding lookup ``y = W[ids]`` with sparse gradient accumulation.

Backward: ``dW[v] += sum of dy at every position where ids == v``; repeated ids are summed
(``np.add.at`` semantics), and only the rows that occur are touched.

Embedding dropout (Gal & Ghahramani 2016; AWD-LSTM's ``embedded_dropout``) drops whole words:
in training, ``forward(ids, drop=p, rng=rng)`` looks up in ``W * s[:, None]`` with one row
scale ``s_v ~ Bernoulli(1 - p) / (1 - p)`` per word of the vocabulary, drawn once per call, so
every occurrence of a dropped word in the batch is zero.  Backward:
``dW[v] += s_v * sum of dy where ids == v`` (docs/derivations.md#embedding-dropout).
"""

from __future__ import annotations

import numpy as np

from ...checks import check_ids
from .. import init as initializers
from ..module import Module
from .dropout import dropout_mask


class Embedding(Module):
    """``Embedding(V, E)``: ``W`` (V, E); ``forward(ids (...)) -> (..., E)``.

    >>> emb = Embedding(10, 4, rng=0)
    >>> y, cache = emb.forward(np.array([[1, 2, 1]]))
    >>> y.shape
    (1, 3, 4)
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, *, init: str = "normal",
                 init_scale: float = 0.1, padding_idx: int | None = None, dtype="float32",
                 rng=None):
        super().__init__()
        rng = initializers.as_rng(rng)
        dt = np.dtype(dtype)
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.padding_idx = padding_idx
        if init == "uniform":
            W = initializers.uniform(rng, (num_embeddings, embedding_dim), init_scale, dt)
        else:
            W = rng.standard_normal((num_embeddings, embedding_dim)).astype(dt)
        if padding_idx is not None:
            W[padding_idx] = 0
        self.add_param("W", W)

    def forward(self, ids, drop: float = 0.0, rng: np.random.Generator | None = None):
        """``(W[ids], cache)``; with ``drop > 0`` in training, embedding dropout (above) with
        row scales drawn from ``rng``; the cache is then ``(ids, s)``, else ``ids``."""
        ids = check_ids("Embedding", "ids", ids, self.num_embeddings)
        y = self.param["W"][ids]
        if not self.training or drop == 0.0:
            return y, ids
        s = self.row_scale(drop, rng)
        y *= s[ids][..., None]
        return y, (ids, s)

    def row_scale(self, drop: float, rng: np.random.Generator) -> np.ndarray:
        """One draw of embedding dropout: ``s`` (V,), ``s_v ~ Bernoulli(1 - drop) / (1 -
        drop)``.  A caller that looks rows up itself multiplies them by ``s[ids]`` and passes
        ``(ids, s)`` to :meth:`backward` as the cache."""
        if not 0.0 < drop < 1.0:
            raise ValueError(f"Embedding: expected drop in [0, 1), got {drop!r}")
        return dropout_mask((self.num_embeddings,), drop, rng, self.param["W"].dtype)  # (V,)

    def backward(self, dy, cache):
        """Accumulate into ``grad["W"]``; returns the touched rows (unique ids)."""
        E = self.embedding_dim
        if isinstance(cache, tuple):
            ids, s = cache
            dy = dy * s[ids][..., None]
        else:
            ids = cache
        flat = ids.reshape(-1)
        dy2 = dy.reshape(-1, E)
        rows, inverse = np.unique(flat, return_inverse=True)
        acc = np.zeros((rows.size, E), dtype=self.grad["W"].dtype)
        np.add.at(acc, inverse, dy2)
        if self.padding_idx is not None:
            acc[rows == self.padding_idx] = 0
        self.grad["W"][rows] += acc
        return rows
