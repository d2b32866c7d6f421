"""Vanilla (Elman) RNN cell: ``h_t = phi(x_t W_x + h_{t-1} W_h + b)``, phi = tanh or ReLU.

Backward (docs/derivations.md#rnn)::

    da_t     = (dh_t + dHs_t) * phi'(a_t)        tanh' = 1 - h_t^2,  relu' = [h_t > 0]
    dh_{t-1} = da_t W_h^T
    dW_h     = sum_t h_{t-1}^T da_t               (one multiply after the loop)
"""

from __future__ import annotations

import numpy as np

from .._blas import blas_threads


def forward(xp, h0, p, mask=None, full=None, *, grad=True, nonlinearity="tanh"):
    T, B, H = xp.shape
    W_h = p["W_h"]
    full = T if full is None else full
    Hs = np.empty((T + 1, B, H), dtype=xp.dtype)  # (T+1, B, H)
    Hs[0] = h0
    relu = nonlinearity == "relu"
    with blas_threads(1):  # small multiplies: one thread
        for t in range(T):
            h = Hs[t + 1]
            np.matmul(Hs[t], W_h, out=h)
            h += xp[t]
            if relu:
                np.maximum(h, 0, out=h)
            else:
                np.tanh(h, out=h)
            if t >= full:
                np.copyto(h, Hs[t], where=~mask[t])
    if not grad:
        return Hs, Hs[-1], None
    return Hs, Hs[-1], {"Hs": Hs, "mask": mask, "full": full, "W_h": W_h, "relu": relu}


def backward(dHs, dhT, cache, consume=False):
    Hs, mask, full, W_h = cache["Hs"], cache["mask"], cache["full"], cache["W_h"]
    T, B, H = dHs.shape
    hs = Hs[1:]
    if cache["relu"]:
        dA = (hs > 0).astype(Hs.dtype)  # (T, B, H)
    else:
        dA = np.multiply(hs, hs)
        np.subtract(1, dA, out=dA)
    if mask is not None:
        dA *= mask
    W_hT = np.ascontiguousarray(W_h.T)
    dh = np.zeros((B, H), Hs.dtype) if dhT is None else np.array(dhT, dtype=Hs.dtype)
    tmp = np.empty((B, H), Hs.dtype)
    with blas_threads(1):  # small multiplies: one thread
        for t in range(T - 1, -1, -1):
            dh += dHs[t]
            da = dA[t]
            da *= dh
            if t >= full:
                np.matmul(da, W_hT, out=tmp)
                np.copyto(dh, tmp, where=mask[t])
            else:
                np.matmul(da, W_hT, out=dh)
    return dA, dh, param_grads(dA, Hs)


def param_grads(dA, Hs) -> dict:
    """``dW_h`` from ``dA`` (T, B, H) in one multiply (shared with the compiled backward)."""
    T, B, H = dA.shape
    return {"W_h": Hs[:-1].reshape(T * B, H).T @ dA.reshape(T * B, H)}


def step(xp_t, h, p, *, nonlinearity="tanh"):
    a = h @ p["W_h"]
    a += xp_t
    return np.maximum(a, 0, out=a) if nonlinearity == "relu" else np.tanh(a, out=a)
