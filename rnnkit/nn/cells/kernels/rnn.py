"""Compiled Elman RNN time loops: the equations, cache and results of
:mod:`rnnkit.nn.cells.rnn`, with the non-linearity (and its derivative, in the backward) fused
into one pass per step after the product ``h_{t-1} @ W_h`` (:func:`.packed.product`).  Large
steps run the loop in Python around the same passes, as in :mod:`.lstm`."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..._blas import blas_threads
from .. import rnn as ref
from .common import (
    NO_MASK,
    PY_LOOP_MIN,
    as_c,
    carried,
    gemm,
    mask_rows,
    row_chunks,
    run_step,
    split_min,
)
from .packed import prepare, product
from .vmath import tanh

_JIT = {"cache": True, "error_model": "numpy"}


@njit(nogil=True, **_JIT)
def _forward_rows(a, hp, h, relu, m, masked, b0, b1):
    """``h`` holds ``h_{t-1} W_h`` on entry, ``h_t`` on exit."""
    H = h.shape[1]
    for b in range(b0, b1):
        if masked and not m[b]:
            h[b] = hp[b]
        elif relu:
            for j in range(H):
                h[b, j] = max(h[b, j] + a[b, j], 0)
        else:
            for j in range(H):
                h[b, j] = tanh(h[b, j] + a[b, j])


@njit(parallel=True, **_JIT)
def _forward_rows_par(a, hp, h, relu, m, masked, bounds):
    for k in prange(len(bounds) - 1):
        _forward_rows(a, hp, h, relu, m, masked, bounds[k], bounds[k + 1])


@njit(**_JIT)
def _forward(xp, Hs, W_h, P, relu, mask, full, bounds, pmin):
    T, B = xp.shape[:2]
    par = len(bounds) > 2
    ppar = par and B * W_h.size >= pmin
    for t in range(T):
        product(Hs[t], W_h, P, Hs[t + 1], ppar)
        masked = t >= full
        m = mask[t] if masked else mask[0]
        if par:
            _forward_rows_par(xp[t], Hs[t], Hs[t + 1], relu, m, masked, bounds)
        else:
            _forward_rows(xp[t], Hs[t], Hs[t + 1], relu, m, masked, bounds[0], bounds[-1])


@njit(nogil=True, **_JIT)
def _backward_rows(h, dhs, dh, da, relu, m, masked, b0, b1):
    """``dh`` in: the carried gradient; out: ``g`` (kept at padded rows).  The branches are
    taken per row, so that each loop vectorises."""
    H = dh.shape[1]
    for b in range(b0, b1):
        if masked and not m[b]:
            for j in range(H):
                dh[b, j] += dhs[b, j]
                da[b, j] = 0
        elif relu:
            for j in range(H):
                g = dh[b, j] + dhs[b, j]
                dh[b, j] = g
                da[b, j] = g if h[b, j] > 0 else 0
        else:
            for j in range(H):
                g = dh[b, j] + dhs[b, j]
                dh[b, j] = g
                da[b, j] = g * (1 - h[b, j] * h[b, j])


@njit(parallel=True, **_JIT)
def _backward_rows_par(h, dhs, dh, da, relu, m, masked, bounds):
    for k in prange(len(bounds) - 1):
        _backward_rows(h, dhs, dh, da, relu, m, masked, bounds[k], bounds[k + 1])


@njit(**_JIT)
def _backward(Hs, dHs, dh, dA, W_hT, P, relu, mask, full, bounds, pmin):
    T, B, H = dHs.shape
    back = np.empty((B, H), dh.dtype)
    par = len(bounds) > 2
    ppar = par and B * W_hT.size >= pmin
    for t in range(T - 1, -1, -1):
        masked = t >= full
        m = mask[t] if masked else mask[0]
        if par:
            _backward_rows_par(Hs[t + 1], dHs[t], dh, dA[t], relu, m, masked, bounds)
        else:
            _backward_rows(Hs[t + 1], dHs[t], dh, dA[t], relu, m, masked, bounds[0],
                           bounds[-1])
        product(dA[t], W_hT, P, back, ppar)
        for b in range(B):
            if not masked or m[b]:
                dh[b] = back[b]


def _forward_py(xp, Hs, W_h, P, relu, mask, full, bounds, pmin):
    """:func:`_forward` with the loop in Python: NumPy's BLAS for large steps."""
    par = len(bounds) > 2
    for t in range(xp.shape[0]):
        np.matmul(Hs[t], W_h, out=Hs[t + 1])
        masked = t >= full
        m = mask[t] if masked else mask[0]
        if par:
            _forward_rows_par(xp[t], Hs[t], Hs[t + 1], relu, m, masked, bounds)
        else:
            _forward_rows(xp[t], Hs[t], Hs[t + 1], relu, m, masked, bounds[0], bounds[-1])


def _backward_py(Hs, dHs, dh, dA, W_hT, P, relu, mask, full, bounds, pmin):
    """:func:`_backward` with the loop in Python."""
    back = np.empty_like(dh)
    par = len(bounds) > 2
    for t in range(dHs.shape[0] - 1, -1, -1):
        masked = t >= full
        m = mask[t] if masked else mask[0]
        if par:
            _backward_rows_par(Hs[t + 1], dHs[t], dh, dA[t], relu, m, masked, bounds)
        else:
            _backward_rows(Hs[t + 1], dHs[t], dh, dA[t], relu, m, masked, bounds[0],
                           bounds[-1])
        np.matmul(dA[t], W_hT, out=back)
        if masked:
            np.copyto(dh, back, where=m[:, None])
        else:
            dh[...] = back


def forward(xp, h0, p, mask=None, full=None, *, grad=True, nonlinearity="tanh"):
    """:func:`rnnkit.nn.cells.rnn.forward`, compiled."""
    T, B, H = xp.shape
    dt = xp.dtype
    full = T if full is None else full
    relu = nonlinearity == "relu"
    Hs = np.empty((T + 1, B, H), dt)  # (T+1, B, H)
    Hs[0] = h0
    loop = _forward_py if B * H >= PY_LOOP_MIN else _forward
    W_h = as_c(p["W_h"], dt)
    with blas_threads(1):
        loop(as_c(xp, dt), Hs, W_h, prepare(W_h, T), relu, mask_rows(mask, T, B), full,
             row_chunks(B, H), split_min())
    if not grad:
        return Hs, Hs[-1], None
    return Hs, Hs[-1], {"Hs": Hs, "mask": mask, "full": full, "W_h": p["W_h"], "relu": relu}


def backward(dHs, dhT, cache, consume=False):
    """:func:`rnnkit.nn.cells.rnn.backward`, compiled."""
    Hs, mask, full = cache["Hs"], cache["mask"], cache["full"]
    T, B, H = dHs.shape
    dt = Hs.dtype
    dh = carried(dhT, B, H, dt)
    dA = np.empty((T, B, H), dt)
    loop = _backward_py if B * H >= PY_LOOP_MIN else _backward
    W_hT = np.ascontiguousarray(cache["W_h"].T, dtype=dt)
    with blas_threads(1):
        loop(Hs, as_c(dHs, dt), dh, dA, W_hT, prepare(W_hT, T), cache["relu"],
             mask_rows(mask, T, B), full, row_chunks(B, H), split_min())
    return dA, dh, ref.param_grads(dA, Hs)


@njit(**_JIT)
def _step(a, hp, W_h, relu, h):
    gemm(hp, W_h, h)
    _forward_rows(a, hp, h, relu, NO_MASK, False, 0, a.shape[0])


def step(xp_t, h, p, *, nonlinearity="tanh"):
    """One step for generation (:func:`rnnkit.nn.cells.rnn.step`): one compiled call."""
    dt = h.dtype
    hp = as_c(h, dt)
    out = np.empty_like(hp)
    W_h = as_c(p["W_h"], dt)
    args = (as_c(xp_t, dt), hp, W_h, nonlinearity == "relu", out)
    run_step(_step, args, hp.shape[0] * W_h.size)
    return out
