"""LSTM cell, gates packed ``i, f, g, o`` (PyTorch order), optional diagonal peepholes.

::

    i = sigma(a_i + p_i c)    f = sigma(a_f + p_f c)    g = tanh(a_g)     (a = x W_x + h W_h + b)
    c' = f * c + i * g
    o = sigma(a_o + p_o c')   h' = o * tanh(c')

Backward (docs/derivations.md#lstm), with ``gh = dh' (+ dHs_t)`` and ``gc = dc'``::

    da_o = gh tanh(c') o (1 - o)
    gc  += gh o (1 - tanh(c')^2)  [+ da_o p_o]
    da_i = gc g i (1 - i)     da_f = gc c f (1 - f)     da_g = gc i (1 - g^2)
    dc   = gc f  [+ da_i p_i + da_f p_f]                dh = da W_h^T

Without peepholes every factor except ``gh`` and ``gc`` is known after the forward pass, so the
backward loop is six operations per step; the factors are formed for all steps at once.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .activations import gate_scales


class LSTMState(NamedTuple):
    """LSTM state: hidden ``h`` and cell ``c``, same shape."""

    h: np.ndarray
    c: np.ndarray


def forward(xp, state0, p, mask=None, full=None):
    T, B, G = xp.shape
    H = G // 4
    dt = xp.dtype
    full = T if full is None else full
    pre, shift = gate_scales("lstm", H, dt)
    xp *= pre  # sigmoid gates computed as tanh(a / 2) / 2 + 1 / 2
    W_hs = p["W_h"] * pre  # (H, 4H)
    peep = "p_i" in p
    Hs = np.empty((T + 1, B, H), dt)  # (T+1, B, H)
    Cs = np.empty((T + 1, B, H), dt)
    TC = np.empty((T, B, H), dt)  # tanh(c_t)
    Hs[0], Cs[0] = state0
    tmp = np.empty((B, G), dt)
    tmpH = np.empty((B, H), dt)
    if peep:
        p_i, p_f, p_o = (0.5 * p[k] for k in ("p_i", "p_f", "p_o"))
    for t in range(T):
        a = xp[t]
        np.matmul(Hs[t], W_hs, out=tmp)
        a += tmp
        c_prev, c = Cs[t], Cs[t + 1]
        i, f, g, o = a[:, :H], a[:, H : 2 * H], a[:, 2 * H : 3 * H], a[:, 3 * H :]
        if peep:
            np.multiply(c_prev, p_i, out=tmpH)
            i += tmpH
            np.multiply(c_prev, p_f, out=tmpH)
            f += tmpH
            ifg = a[:, : 3 * H]
            np.tanh(ifg, out=ifg)
            ifg *= pre[: 3 * H]
            ifg += shift[: 3 * H]
        else:
            np.tanh(a, out=a)
            a *= pre
            a += shift
        np.multiply(f, c_prev, out=c)
        np.multiply(i, g, out=tmpH)
        c += tmpH
        if peep:
            np.multiply(c, p_o, out=tmpH)
            o += tmpH
            np.tanh(o, out=o)
            o *= 0.5
            o += 0.5
        np.tanh(c, out=TC[t])
        np.multiply(o, TC[t], out=Hs[t + 1])
        if t >= full:
            inv = ~mask[t]
            np.copyto(Hs[t + 1], Hs[t], where=inv)
            np.copyto(c, c_prev, where=inv)
    cache = {"A": xp, "Hs": Hs, "Cs": Cs, "TC": TC, "mask": mask, "full": full, "p": p}
    return Hs, Cs, cache


def backward(dHs, dstateT, cache):
    A, Hs, Cs, TC = cache["A"], cache["Hs"], cache["Cs"], cache["TC"]
    mask, full, p = cache["mask"], cache["full"], cache["p"]
    T, B, H = dHs.shape
    dt = Hs.dtype
    peep = "p_i" in p
    I, Fg, Gc, O = (A[..., k * H : (k + 1) * H] for k in range(4))
    Cprev = Cs[:-1]
    # dA starts as the factors that multiply gc (for i, f, g) and gh (for o), all steps at once.
    dA = A * (1 - A)  # sigmoid'; the g block is fixed just below
    dA4 = dA.reshape(T, B, 4, H)
    np.multiply(Gc, Gc, out=dA4[:, :, 2])
    np.subtract(1, dA4[:, :, 2], out=dA4[:, :, 2])
    dA4[:, :, 0] *= Gc
    dA4[:, :, 1] *= Cprev
    dA4[:, :, 2] *= I
    dA4[:, :, 3] *= TC
    Q = O * (1 - TC * TC)  # d c' / d h' path factor
    Fm = Fg
    if mask is not None:
        dA *= mask
        Q *= mask
        Fm = np.where(mask, Fg, 1).astype(dt)  # padded: c passes through
    if dstateT is None:
        dh, dc = np.zeros((B, H), dt), np.zeros((B, H), dt)
    else:
        dh, dc = np.array(dstateT[0], dtype=dt), np.array(dstateT[1], dtype=dt)
    W_hT = np.ascontiguousarray(p["W_h"].T)
    tmpH = np.empty((B, H), dt)
    if peep:
        p_i, p_f, p_o = p["p_i"], p["p_f"], p["p_o"]
    for t in range(T - 1, -1, -1):
        dh += dHs[t]
        np.multiply(dh, Q[t], out=tmpH)
        dc += tmpH
        da = dA[t]
        da[:, 3 * H :] *= dh
        if peep:
            np.multiply(da[:, 3 * H :], p_o, out=tmpH)
            dc += tmpH
        da[:, : 3 * H].reshape(B, 3, H)[...] *= dc[:, None, :]
        dc *= Fm[t]
        if peep:
            np.multiply(da[:, :H], p_i, out=tmpH)
            dc += tmpH
            np.multiply(da[:, H : 2 * H], p_f, out=tmpH)
            dc += tmpH
        if t >= full:
            np.matmul(da, W_hT, out=tmpH)
            np.copyto(dh, tmpH, where=mask[t])
        else:
            np.matmul(da, W_hT, out=dh)
    dparams = {"W_h": Hs[:-1].reshape(T * B, H).T @ dA.reshape(T * B, 4 * H)}
    if peep:
        dparams["p_i"] = np.einsum("tbh,tbh->h", dA4[:, :, 0], Cprev)
        dparams["p_f"] = np.einsum("tbh,tbh->h", dA4[:, :, 1], Cprev)
        dparams["p_o"] = np.einsum("tbh,tbh->h", dA4[:, :, 3], Cs[1:])
    return dA, LSTMState(dh, dc), dparams


def step(xp_t, state, p):
    """One LSTM step for generation: ``xp_t`` (B, 4H) = ``x W_x + b``; returns the new state."""
    h, c = state
    H = h.shape[-1]
    a = h @ p["W_h"]
    a += xp_t
    i, f, g, o = a[:, :H], a[:, H : 2 * H], a[:, 2 * H : 3 * H], a[:, 3 * H :]
    if "p_i" in p:
        i += p["p_i"] * c
        f += p["p_f"] * c
    ifg = a[:, : 3 * H]
    ifg[:, : 2 * H] *= 0.5
    np.tanh(ifg, out=ifg)
    ifg[:, : 2 * H] *= 0.5
    ifg[:, : 2 * H] += 0.5
    c = f * c + i * g
    if "p_o" in p:
        o += p["p_o"] * c
    o *= 0.5
    np.tanh(o, out=o)
    o *= 0.5
    o += 0.5
    return LSTMState(o * np.tanh(c), c)
