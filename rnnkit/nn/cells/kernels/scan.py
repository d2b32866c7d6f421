"""The compiled linear recurrence of the min cells (:mod:`rnnkit.nn.minrnn`).

``h_t = a_t h_{t-1} + b_t`` element by element with every ``a_t`` in ``(0, 1]`` and
``b_t >= 0`` known in advance: one pass over the window in compiled code, in the order the
recurrence is written.  Nothing underflows that matters: a product ``a_1 ... a_t`` that
rounds to 0 multiplies a term that is 0 to working precision as well, which is what the
log-space scan of :func:`rnnkit.nn.minrnn.scan` (the readable reference) computes too.  The
backward is the adjoint recurrence ``g_t = d_t + a_{t+1} g_{t+1}``
(docs/derivations.md#mingru-and-minlstm).
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True, error_model="numpy")
def _forward(a, b, Hs):
    T, N = a.shape
    for t in range(T):
        for n in range(N):
            Hs[t + 1, n] = a[t, n] * Hs[t, n] + b[t, n]


@njit(cache=True, nogil=True, error_model="numpy")
def _backward(d, a, G):
    T, N = d.shape
    for n in range(N):
        G[T - 1, n] = d[T - 1, n]
    for t in range(T - 2, -1, -1):
        for n in range(N):
            G[t, n] = d[t, n] + a[t + 1, n] * G[t + 1, n]


def forward(log_a, log_b, h0):
    """``Hs`` (T+1, B, H) of ``h_t = exp(log a_t) h_{t-1} + exp(log b_t)`` from ``h0``."""
    T, B, H = log_a.shape
    dt = log_a.dtype
    Hs = np.empty((T + 1, B, H), dt)
    Hs[0] = h0
    _forward(np.exp(log_a).reshape(T, B * H), np.exp(log_b).reshape(T, B * H),
             Hs.reshape(T + 1, B * H))
    return Hs


def backward(d, a):
    """``G`` (T, B, H): ``g_t = d_t + a_{t+1} g_{t+1}``, ``d`` the gradient reaching each
    ``h_t`` (the final state's included), ``a`` the coefficients (not their logarithms)."""
    T, B, H = d.shape
    G = np.empty((T, B, H), d.dtype)
    _backward(np.ascontiguousarray(d).reshape(T, B * H),
              np.ascontiguousarray(a, dtype=d.dtype).reshape(T, B * H), G.reshape(T, B * H))
    return G
