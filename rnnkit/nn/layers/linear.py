"""Affine layer ``y = x W + b`` over the last axis.

Backward: ``dx = dy W^T``, ``dW = x^T dy``, ``db = sum dy`` with leading axes flattened.
"""

from __future__ import annotations

import numpy as np

from .. import init as initializers
from ..module import Module


class Linear(Module):
    """``Linear(D, O)``: ``W`` (D, O), ``b`` (O,).

    >>> lin = Linear(3, 2, rng=0)
    >>> y, cache = lin.forward(np.ones((4, 5, 3), np.float32))
    >>> y.shape
    (4, 5, 2)
    """

    def __init__(self, in_features: int, out_features: int, *, bias: bool = True,
                 init: str = "xavier", init_scale: float = 0.1, dtype="float32", rng=None):
        super().__init__()
        rng = initializers.as_rng(rng)
        dt = np.dtype(dtype)
        self.in_features, self.out_features = in_features, out_features
        if init == "uniform":
            W = initializers.uniform(rng, (in_features, out_features), init_scale, dt)
        elif init == "pytorch":
            W = initializers.uniform(rng, (in_features, out_features),
                                     1 / np.sqrt(in_features), dt)
        else:
            W = initializers.xavier_uniform(rng, in_features, out_features, dt)
        self.add_param("W", W)
        if bias:
            self.add_param("b", np.zeros(out_features, dt))

    def forward(self, x, out=None):
        """``x`` (..., D) -> ``(y (..., O), cache)``; ``out``: an (N, O) array (N the rows of
        ``x``) to write ``y`` into, instead of a fresh one."""
        x = np.asarray(x)
        if x.ndim < 1 or x.shape[-1] != self.in_features:
            raise ValueError(f"Linear: expected x of shape (..., {self.in_features}), "
                             f"got {tuple(x.shape)}")
        # always a 2-D multiply: NumPy runs a stacked (3-D) matmul as many small ones
        y = np.matmul(x.reshape(-1, self.in_features), self.param["W"], out=out)  # (N, O)
        if "b" in self.param:
            y += self.param["b"]
        return y.reshape(*x.shape[:-1], self.out_features), x

    def backward(self, dy, x):
        D, O = self.in_features, self.out_features
        dy2 = dy.reshape(-1, O)
        self.grad["W"] += x.reshape(-1, D).T @ dy2
        if "b" in self.grad:
            self.grad["b"] += dy2.sum(axis=0)
        return (dy2 @ self.param["W"].T).reshape(*dy.shape[:-1], D)
