"""Softmax cross-entropy (masked) and perplexity.

For logits ``z`` (N, V) and targets ``y``: ``log p = z - logsumexp(z)`` computed after
subtracting the row maximum (stable).  ``loss = sum_n w_n (-log p[n, y_n]) / sum_n w_n`` where
``w_n`` is 1 for real tokens and 0 for padding.  Gradient: ``dz = w_n (softmax(z_n) - onehot(y_n))
/ sum w`` (docs/derivations.md#softmax-cross-entropy).
"""

from __future__ import annotations

import math

import numpy as np

from ..checks import check_ids
from ..errors import NonFiniteError


def log_softmax(z: np.ndarray, axis: int = -1) -> np.ndarray:
    z = z - z.max(axis=axis, keepdims=True)
    z -= np.log(np.exp(z).sum(axis=axis, keepdims=True))
    return z


def softmax(z: np.ndarray, axis: int = -1) -> np.ndarray:
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    e /= e.sum(axis=axis, keepdims=True)
    return e


_BLOCK = 1 << 18  # elements per block of rows (1 MB of float32): the passes stay in L2 cache


def softmax_cross_entropy(logits, targets, mask=None, reduction: str = "mean", *,
                          grad: bool = True, overwrite: bool = False):
    """Cross-entropy of ``logits`` (..., V) against integer ``targets`` (...).

    ``mask`` (...) is 1/True for real tokens.  Returns ``(loss, dlogits, n_tokens)`` where
    ``loss`` is the mean (or sum) NLL over real tokens and ``dlogits`` its gradient
    (``None`` with ``grad=False``).

    One pass per step over each block of rows, fused:  ``m = max z``, ``p = exp(z - m)``,
    ``s = sum p``, ``nll = log s - (z_y - m)``, then ``dz = p * (w / (s n))`` and
    ``dz_y -= w / n`` (``n`` = real tokens for the mean, 1 for the sum).  Rows go in blocks of
    about 1 MB so that these passes read the cache rather than memory.

    ``overwrite=True`` lets the function use ``logits`` as its work buffer, when it is a
    writeable floating-point array with rows contiguous (as a fresh output layer's are): then
    with ``grad`` the returned ``dlogits`` *is* ``logits`` reshaped (same memory, now holding
    the gradient), and with ``grad=False`` ``logits`` is left holding ``exp(z - max z)`` row by
    row.  Otherwise, and by default, ``logits`` is not modified and ``dlogits`` is a new array.

    >>> z = np.array([[2.0, 0.0, 0.0]]); loss, dz, n = softmax_cross_entropy(z, [0])
    >>> round(loss, 4), n, float(z[0, 0])               # z unchanged
    (0.2395, 1, 2.0)
    >>> _, dz, _ = softmax_cross_entropy(z, [0], overwrite=True)
    >>> np.shares_memory(dz, z), round(float(z[0, 0]), 4)   # z now holds the gradient
    (True, -0.213)
    """
    logits = np.asarray(logits)
    targets = np.asarray(targets)
    V = logits.shape[-1]
    if targets.shape != logits.shape[:-1]:
        raise ValueError(f"softmax_cross_entropy: expected targets of shape "
                         f"{logits.shape[:-1]}, got {targets.shape}")
    targets = check_ids("softmax_cross_entropy", "targets", targets, V)
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    z = logits.reshape(-1, V)  # (N, V)
    y = targets.reshape(-1)
    N = y.size
    dt = z.dtype if z.dtype.kind == "f" else np.dtype(np.float64)
    w = None
    if mask is not None:
        w = np.asarray(mask, dtype=dt).reshape(-1)  # (N,)
        if w.shape[0] != N:
            raise ValueError(f"softmax_cross_entropy: expected mask of shape {targets.shape}, "
                             f"got {np.shape(mask)}")
    n = float(N) if w is None else float(w.sum())
    scale = 1.0 / max(n, 1.0) if reduction == "mean" else 1.0
    rows = np.arange(N)
    zy = z[rows, y]  # (N,) a copy, taken before z may be overwritten
    in_place = overwrite and z.dtype == dt and z.flags.writeable and z.flags.c_contiguous
    p = z if in_place else np.empty(z.shape, dt)  # (N, V)
    nll = np.empty(N, dt)  # (N,)
    step = max(1, _BLOCK // max(V, 1))
    with np.errstate(invalid="ignore"):  # NaN/inf logits: the error below says so
        for a in range(0, N, step):  # blocks of rows, for the cache (see above)
            zb, pb, nb = z[a : a + step], p[a : a + step], nll[a : a + step]
            m = zb.max(axis=1, keepdims=True)  # (b, 1)
            np.subtract(zb, m, out=pb)
            np.exp(pb, out=pb)
            s = pb.sum(axis=1)  # (b,)
            np.log(s, out=nb)
            nb -= zy[a : a + step] - m[:, 0]  # -log softmax at the target
            if grad:
                r = np.divide(scale, s, out=s)  # w / (s n), one multiply per element below
                if w is not None:
                    r *= w[a : a + step]
                pb *= r[:, None]
    total = float(nll.sum()) if w is None else float((nll * w).sum())
    if not math.isfinite(total):  # one test on the sum instead of a pass over the logits
        raise NonFiniteError("softmax_cross_entropy: logits contain NaN or inf; expected "
                             "finite values")
    if not grad:
        return total * scale, None, int(n)
    p[rows, y] -= scale if w is None else w * scale
    return total * scale, p.reshape(logits.shape), int(n)


def perplexity(mean_nll: float) -> float:
    """``exp(mean NLL)``; ``inf`` instead of an overflow for a huge loss."""
    return math.exp(mean_nll) if mean_nll < 700 else math.inf
