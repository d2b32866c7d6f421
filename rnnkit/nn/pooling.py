"""Pooling the outputs of a recurrent stack over time into one vector per row.

``out`` is the (B, T, dirs*H) output of a sequence layer and ``lengths`` (B,) the number of
real steps of each row; whatever is at the padded steps is ignored.  Three modes, all over
*real steps only*::

    last:  unidirectional  v_b = out[b, len_b - 1]
           bidirectional   v_b = out[b, len_b - 1, :H] ⊕ out[b, 0, H:]
    mean:  v_b = (1 / len_b) sum_{t < len_b} out[b, t]
    max:   v_b[k] = max_{t < len_b} out[b, t, k]

``last`` is exactly the top layer's final hidden state ``h`` of each direction (for a
bidirectional layer the backward direction ends at step 0, not at ``len_b - 1``: the pitfall the
recurrent module's docstring names), read from ``out`` so the gradient flows through ``dout``
alone.  Backward: ``last`` and ``max`` route ``dv`` to the step
that was picked (for ``max`` the first maximum, per feature); ``mean`` spreads ``dv / len_b``
over the real steps and leaves padded steps at zero.

>>> out = np.arange(12.0).reshape(1, 3, 4)           # B=1, T=3, dirs*H=4
>>> pool_forward(out, np.array([2]), "last", bidirectional=True)[0]
array([[4., 5., 2., 3.]])
>>> pool_forward(out, np.array([2]), "mean")[0]
array([[2., 3., 4., 5.]])
"""

from __future__ import annotations

import numpy as np

POOLINGS = ("last", "mean", "max")


def pool_forward(out: np.ndarray, lengths: np.ndarray, mode: str, bidirectional: bool = False):
    """``out`` (B, T, F), ``lengths`` (B,) -> ``(pooled (B, F), cache)``."""
    B, T, F = out.shape
    rows = np.arange(B)
    last = lengths - 1  # (B,)
    if mode == "last":
        if bidirectional:
            H = F // 2
            pooled = np.concatenate([out[rows, last, :H], out[:, 0, H:]], axis=1)  # (B, 2H)
        else:
            pooled = out[rows, last]  # (B, F)
        return pooled, (mode, bidirectional, out.shape, lengths, None)
    if mode == "mean":
        inv = (1.0 / lengths).astype(out.dtype)[:, None]  # (B, 1)
        real = (np.arange(T)[None, :] < lengths[:, None])[..., None]  # (B, T, 1)
        return (out * real).sum(axis=1) * inv, (mode, bidirectional, out.shape, lengths, inv)
    if mode == "max":
        pad = np.arange(T)[None, :] >= lengths[:, None]  # (B, T)
        masked = np.where(pad[..., None], -np.inf, out)  # (B, T, F)
        arg = masked.argmax(axis=1)  # (B, F)
        pooled = np.take_along_axis(out, arg[:, None, :], axis=1)[:, 0]  # (B, F)
        return pooled, (mode, bidirectional, out.shape, lengths, arg)
    raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, got {mode!r}")


def pool_backward(dpooled: np.ndarray, cache) -> np.ndarray:
    """``dpooled`` (B, F) -> ``dout`` (B, T, F), zero at padded steps."""
    mode, bidirectional, shape, lengths, extra = cache
    B, T, F = shape
    dout = np.zeros(shape, dpooled.dtype)  # (B, T, F)
    rows = np.arange(B)
    if mode == "last":
        if bidirectional:
            H = F // 2
            dout[rows, lengths - 1, :H] = dpooled[:, :H]
            dout[:, 0, H:] += dpooled[:, H:]  # += : step 0 is also the last one when len_b = 1
        else:
            dout[rows, lengths - 1] = dpooled
    elif mode == "mean":
        real = (np.arange(T)[None, :] < lengths[:, None])[..., None]  # (B, T, 1)
        dout[...] = (dpooled * extra)[:, None, :] * real
    else:
        np.put_along_axis(dout, extra[:, None, :], dpooled[:, None, :], axis=1)
    return dout
