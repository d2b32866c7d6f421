"""Softmax cross-entropy (masked) and perplexity.

For logits ``z`` (N, V) and targets ``y``: ``log p = z - logsumexp(z)`` computed after
subtracting the row maximum (stable).  ``loss = sum_n w_n (-log p[n, y_n]) / sum_n w_n`` where
``w_n`` is 1 for real tokens and 0 for padding.  Gradient: ``dz = w_n (softmax(z_n) - onehot(y_n))
/ sum w`` (docs/derivations.md#softmax-cross-entropy).
"""

from __future__ import annotations

import math

import numpy as np

from .checks import check_ids


def log_softmax(z: np.ndarray, axis: int = -1) -> np.ndarray:
    z = z - z.max(axis=axis, keepdims=True)
    z -= np.log(np.exp(z).sum(axis=axis, keepdims=True))
    return z


def softmax(z: np.ndarray, axis: int = -1) -> np.ndarray:
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    e /= e.sum(axis=axis, keepdims=True)
    return e


def softmax_cross_entropy(logits, targets, mask=None, reduction: str = "mean"):
    """Cross-entropy of ``logits`` (..., V) against integer ``targets`` (...).

    ``mask`` (...) is 1/True for real tokens.  Returns ``(loss, dlogits, n_tokens)`` where
    ``loss`` is the mean (or sum) NLL over real tokens and ``dlogits`` its gradient.
    """
    logits = np.asarray(logits)
    targets = np.asarray(targets)
    V = logits.shape[-1]
    if targets.shape != logits.shape[:-1]:
        raise ValueError(f"softmax_cross_entropy: expected targets of shape "
                         f"{logits.shape[:-1]}, got {targets.shape}")
    targets = check_ids("softmax_cross_entropy", "targets", targets, V)
    z = logits.reshape(-1, V)
    y = targets.reshape(-1)
    N = y.size
    p = z - z.max(axis=1, keepdims=True)  # (N, V), fresh buffer reused for the gradient
    np.exp(p, out=p)
    s = p.sum(axis=1, keepdims=True)
    rows = np.arange(N)
    # -log softmax at the target, from the same shifted logits
    nll = np.log(s[:, 0]) - (z[rows, y] - z.max(axis=1))
    p /= s
    p[rows, y] -= 1.0
    if mask is not None:
        w = np.asarray(mask, dtype=p.dtype).reshape(-1)
        if w.shape[0] != N:
            raise ValueError(f"softmax_cross_entropy: expected mask of shape {targets.shape}, "
                             f"got {np.shape(mask)}")
        n = float(w.sum())
        total = float((nll * w).sum())
        p *= w[:, None]
    else:
        n = float(N)
        total = float(nll.sum())
    if reduction == "mean":
        scale = 1.0 / max(n, 1.0)
        p *= scale
        loss = total * scale
    elif reduction == "sum":
        loss = total
    else:
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    return loss, p.reshape(logits.shape), int(n)


def perplexity(mean_nll: float) -> float:
    """``exp(mean NLL)``; ``inf`` instead of an overflow for a huge loss."""
    return math.exp(mean_nll) if mean_nll < 700 else math.inf
