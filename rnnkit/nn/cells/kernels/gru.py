"""Compiled GRU time loops for the PyTorch/cuDNN placement of the reset gate
(``reset_after=True``): the equations, cache and results of :mod:`rnnkit.nn.cells.gru`, with
each step's gate arithmetic fused into one pass after the product ``h_{t-1} @ W_h``
(:func:`.packed.product`; backward: one pass, then ``[da_r, da_z, dhn] @ W_h^T``).  Large
steps run the loop in Python around the same passes, as in :mod:`.lstm`.
``reset_after=False`` runs on NumPy (see :func:`rnnkit.nn.cells.dispatch.cell_module`)."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..._blas import blas_threads
from .. import gru as ref
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
from .vmath import sigmoid, tanh

_JIT = {"cache": True, "error_model": "numpy"}


@njit(nogil=True, fastmath={"contract"}, **_JIT)
def _forward_rows(a, hw, hn, hp, h, b_hn, m, masked, b0, b1):
    # One loop per gate, so that LLVM vectorises each (see .lstm._forward_rows).
    H = h.shape[1]
    for b in range(b0, b1):
        for j in range(H):
            a[b, j] = sigmoid(a[b, j] + hw[b, j])
        for j in range(H):
            a[b, H + j] = sigmoid(a[b, H + j] + hw[b, H + j])
        for j in range(H):
            hn[b, j] = hw[b, 2 * H + j] + b_hn[j]
        for j in range(H):
            a[b, 2 * H + j] = tanh(a[b, 2 * H + j] + a[b, j] * hn[b, j])
        for j in range(H):
            n = a[b, 2 * H + j]
            h[b, j] = n + a[b, H + j] * (hp[b, j] - n)
        if masked and not m[b]:  # padded: the state is carried unchanged
            h[b] = hp[b]


@njit(parallel=True, **_JIT)
def _forward_rows_par(a, hw, hn, hp, h, b_hn, m, masked, bounds):
    for k in prange(len(bounds) - 1):
        _forward_rows(a, hw, hn, hp, h, b_hn, m, masked, bounds[k], bounds[k + 1])


@njit(**_JIT)
def _forward(xp, Hs, HN, W_h, P, b_hn, mask, full, grad, bounds, pmin):
    T, B, _ = xp.shape
    hw = np.empty((B, W_h.shape[1]), xp.dtype)  # (B, 3H)
    par = len(bounds) > 2
    ppar = par and B * W_h.size >= pmin
    for t in range(T):
        product(Hs[t], W_h, P, hw, ppar)
        masked = t >= full
        m = mask[t] if masked else mask[0]
        hn = HN[t] if grad else HN[0]
        if par:
            _forward_rows_par(xp[t], hw, hn, Hs[t], Hs[t + 1], b_hn, m, masked, bounds)
        else:
            _forward_rows(xp[t], hw, hn, Hs[t], Hs[t + 1], b_hn, m, masked, bounds[0],
                          bounds[-1])


@njit(nogil=True, fastmath={"contract"}, **_JIT)
def _backward_rows(a, hp, hn, dhs, dh, dhp, dxp, m, masked, b0, b1):
    """``dh`` in: the carried gradient; out: ``g`` (the caller forms ``dhp W_h^T + g z``).
    Two loops per row with the padded rows apart, so that both vectorise."""
    H = dh.shape[1]
    for b in range(b0, b1):
        if masked and not m[b]:  # padded: no gate gradient, g passes
            for j in range(H):
                dh[b, j] += dhs[b, j]
            for j in range(3 * H):
                dhp[b, j] = 0
                dxp[b, j] = 0
            continue
        for j in range(H):
            g = dh[b, j] + dhs[b, j]
            dh[b, j] = g
            z, n = a[b, H + j], a[b, 2 * H + j]
            dan = g * ((1 - z) * (1 - n * n))
            daz = g * ((hp[b, j] - n) * (z * (1 - z)))
            dxp[b, 2 * H + j] = dan
            dhp[b, 2 * H + j] = dan * a[b, j]
            dhp[b, H + j] = daz
            dxp[b, H + j] = daz
        for j in range(H):
            r = a[b, j]
            dar = dxp[b, 2 * H + j] * (hn[b, j] * (r * (1 - r)))
            dhp[b, j] = dar
            dxp[b, j] = dar


@njit(parallel=True, **_JIT)
def _backward_rows_par(a, hp, hn, dhs, dh, dhp, dxp, m, masked, bounds):
    for k in prange(len(bounds) - 1):
        _backward_rows(a, hp, hn, dhs, dh, dhp, dxp, m, masked, bounds[k], bounds[k + 1])


@njit(nogil=True, **_JIT)
def _carry(dh, back, a, m, masked):
    """``dh = g z + back`` at real rows; ``g`` passes unchanged at padded ones."""
    B, H = dh.shape
    for b in range(B):
        if not masked or m[b]:
            for j in range(H):
                dh[b, j] = dh[b, j] * a[b, H + j] + back[b, j]


@njit(**_JIT)
def _backward(A, Hs, HN, dHs, dh, dHP, dxp, W_hT, P, mask, full, bounds, pmin):
    T, B, H = dHs.shape
    back = np.empty((B, H), dh.dtype)
    par = len(bounds) > 2
    ppar = par and B * W_hT.size >= pmin
    for t in range(T - 1, -1, -1):
        masked = t >= full
        m = mask[t] if masked else mask[0]
        if par:
            _backward_rows_par(A[t], Hs[t], HN[t], dHs[t], dh, dHP[t], dxp[t], m, masked,
                               bounds)
        else:
            _backward_rows(A[t], Hs[t], HN[t], dHs[t], dh, dHP[t], dxp[t], m, masked,
                           bounds[0], bounds[-1])
        product(dHP[t], W_hT, P, back, ppar)
        _carry(dh, back, A[t], m, masked)


def _forward_py(xp, Hs, HN, W_h, P, b_hn, mask, full, grad, bounds, pmin):
    """:func:`_forward` with the loop in Python: NumPy's BLAS for large steps."""
    T, B, _ = xp.shape
    hw = np.empty((B, W_h.shape[1]), xp.dtype)
    par = len(bounds) > 2
    for t in range(T):
        np.matmul(Hs[t], W_h, out=hw)
        masked = t >= full
        m = mask[t] if masked else mask[0]
        hn = HN[t] if grad else HN[0]
        if par:
            _forward_rows_par(xp[t], hw, hn, Hs[t], Hs[t + 1], b_hn, m, masked, bounds)
        else:
            _forward_rows(xp[t], hw, hn, Hs[t], Hs[t + 1], b_hn, m, masked, bounds[0],
                          bounds[-1])


def _backward_py(A, Hs, HN, dHs, dh, dHP, dxp, W_hT, P, mask, full, bounds, pmin):
    """:func:`_backward` with the loop in Python."""
    back = np.empty_like(dh)
    par = len(bounds) > 2
    for t in range(dHs.shape[0] - 1, -1, -1):
        masked = t >= full
        m = mask[t] if masked else mask[0]
        if par:
            _backward_rows_par(A[t], Hs[t], HN[t], dHs[t], dh, dHP[t], dxp[t], m, masked,
                               bounds)
        else:
            _backward_rows(A[t], Hs[t], HN[t], dHs[t], dh, dHP[t], dxp[t], m, masked,
                           bounds[0], bounds[-1])
        np.matmul(dHP[t], W_hT, out=back)
        _carry(dh, back, A[t], m, masked)


def forward(xp, h0, p, mask=None, full=None, *, grad=True, reset_after=True):
    """:func:`rnnkit.nn.cells.gru.forward` (``reset_after=True``), compiled."""
    if not reset_after:
        raise ValueError("GRU kernels: reset_after=False runs on NumPy")
    T, B, G = xp.shape
    H = G // 3
    dt = xp.dtype
    full = T if full is None else full
    a = as_c(xp, dt)  # the gate values end here (the cache's "A")
    Hs = np.empty((T + 1, B, H), dt)  # (T+1, B, H)
    Hs[0] = h0
    HN = np.empty((T if grad else 1, B, H), dt)  # h W_hn + b_hn
    loop = _forward_py if B * H >= PY_LOOP_MIN else _forward
    W_h = as_c(p["W_h"], dt)
    with blas_threads(1):
        loop(a, Hs, HN, W_h, prepare(W_h, T), as_c(p["b_hn"], dt), mask_rows(mask, T, B), full,
             grad, row_chunks(B, H), split_min())
    if not grad:
        return Hs, Hs[-1], None
    cache = {"A": a, "Hs": Hs, "mask": mask, "full": full, "W_h": p["W_h"], "after": True,
             "HN": HN}
    return Hs, Hs[-1], cache


def backward(dHs, dhT, cache, consume=False):
    """:func:`rnnkit.nn.cells.gru.backward` (``reset_after=True``), compiled."""
    Hs, mask, full = cache["Hs"], cache["mask"], cache["full"]
    T, B, H = dHs.shape
    dt = Hs.dtype
    dh = carried(dhT, B, H, dt)
    dHP = np.empty((T, B, 3 * H), dt)  # [da_r, da_z, dhn]
    dxp = np.empty((T, B, 3 * H), dt)  # [da_r, da_z, da_n]
    loop = _backward_py if B * H >= PY_LOOP_MIN else _backward
    W_hT = np.ascontiguousarray(cache["W_h"].T, dtype=dt)
    with blas_threads(1):
        loop(as_c(cache["A"], dt), Hs, as_c(cache["HN"], dt), as_c(dHs, dt), dh, dHP, dxp,
             W_hT, prepare(W_hT, T), mask_rows(mask, T, B), full, row_chunks(B, H), split_min())
    return dxp, dh, ref.param_grads(dHP, cache)


@njit(**_JIT)
def _step(a, hp, W_h, b_hn, h):
    hw = np.empty_like(a)
    gemm(hp, W_h, hw)
    _forward_rows(a, hw, np.empty_like(h), hp, h, b_hn, NO_MASK, False, 0, a.shape[0])


def step(xp_t, h, p, *, reset_after=True):
    """One step for generation (:func:`rnnkit.nn.cells.gru.step`): one compiled call."""
    if not reset_after:
        raise ValueError("GRU kernels: reset_after=False runs on NumPy")
    dt = h.dtype
    a = np.array(xp_t, dtype=dt, order="C")  # (B, 3H), a copy: the gates are written here
    hp = as_c(h, dt)
    out = np.empty_like(hp)
    W_h = as_c(p["W_h"], dt)
    args = (a, hp, W_h, as_c(p["b_hn"], dt), out)
    run_step(_step, args, a.shape[0] * W_h.size)
    return out
