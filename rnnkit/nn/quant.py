"""Symmetric int8 weights with one scale per output unit (per column of ``W (D_in, D_out)``),
or per row of an embedding table ``E (V, E)`` (one scale per token).

rnnkit multiplies ``x @ W``, so the output units of a weight matrix are its columns::

    s_j = max_i |W_ij| / 127          (1 where the column is all zero)
    q_ij = round(W_ij / s_j)          int8 in [-127, 127]
    W_ij ~ q_ij s_j                   |W_ij - q_ij s_j| <= s_j / 2

>>> W = np.array([[0.5, -2.0], [0.25, 1.0]], np.float32)
>>> q, s = quantize_columns(W)
>>> q
array([[ 127, -127],
       [  64,   64]], dtype=int8)
>>> bool(np.all(np.abs(dequantize_columns(q, s) - W) <= s / 2))
True
"""

from __future__ import annotations

import numpy as np

QMAX = 127


def quantize_columns(W: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``W`` (D_in, D_out) float -> ``(q (D_in, D_out) int8, scale (D_out,))`` in W's dtype."""
    W = np.asarray(W)
    if W.ndim != 2 or W.dtype.kind != "f":
        raise ValueError(f"quantize_columns: expected a 2-D float matrix, got {W.dtype} "
                         f"of shape {W.shape}")
    amax = np.abs(W).max(axis=0)  # (D_out,)
    scale = np.where(amax > 0, amax / QMAX, 1).astype(W.dtype)  # (D_out,)
    q = np.clip(np.rint(W / scale), -QMAX, QMAX).astype(np.int8)  # (D_in, D_out)
    return q, scale


def dequantize_columns(q: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """``q (D_in, D_out) int8``, ``scale (D_out,)`` -> float ``W`` in the scale's dtype."""
    return q.astype(scale.dtype) * scale  # (D_in, D_out)


def quantize_rows(E: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``E`` (V, D) -> ``(q (V, D) int8, scale (V,))``: one scale per row (an embedding's token)."""
    q, scale = quantize_columns(np.asarray(E).T)
    return np.ascontiguousarray(q.T), scale


def dequantize(q: np.ndarray, scale: np.ndarray, axis: int) -> np.ndarray:
    """``q * scale`` with ``scale`` running along ``axis`` of ``q`` (1: columns, 0: rows)."""
    return dequantize_columns(q, scale) if axis == 1 else q.astype(scale.dtype) * scale[:, None]
