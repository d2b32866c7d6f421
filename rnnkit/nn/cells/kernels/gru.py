"""Compiled GRU time loops: the equations, cache and results of :mod:`rnnkit.nn.cells.gru`.

With the PyTorch/cuDNN placement of the reset gate (``reset_after=True``) each step's gate
arithmetic is fused into one pass after the product ``h_{t-1} @ W_h`` (:func:`.packed.product`;
backward: one pass, then ``[da_r, da_z, dhn] @ W_h^T``).  Large steps run the loop in Python
around the same passes, as in :mod:`.lstm`.

With the placement of Cho et al. (``reset_after=False``) ``n`` needs ``(r * h_{t-1}) W_hn``, so a
step makes two products: ``h_{t-1} @ W_hrz``, a pass forming ``r``, ``z`` and ``r * h_{t-1}``,
then ``(r * h_{t-1}) @ W_hn`` and a pass forming ``n`` and ``h``.  The backward mirrors it:
``da_z`` and ``da_n``, ``d(rh) = da_n @ W_hn^T``, ``da_r``, then ``[da_r, da_z] @ W_hrz^T``.
Its generation step runs on NumPy (:func:`rnnkit.nn.cells.gru.step`)."""

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
def _new_state(a, hp, h, m, masked, b):
    """Row ``b`` of ``h' = n + z (h - n)`` from the gates in ``a``; at a padded row the state
    is carried unchanged."""
    H = h.shape[1]
    if masked and not m[b]:
        h[b] = hp[b]
        return
    for j in range(H):
        n = a[b, 2 * H + j]
        h[b, j] = n + a[b, H + j] * (hp[b, j] - n)


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
        _new_state(a, hp, h, m, masked, b)


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


# -- the reset gate before the product (Cho et al.) ------------------------------------------
@njit(nogil=True, fastmath={"contract"}, **_JIT)
def _rz_rows(a, hw, hp, rh, b0, b1):
    """``r`` and ``z`` over ``a[:, :2H]``; ``rh = r * h_{t-1}``."""
    H = hp.shape[1]
    for b in range(b0, b1):
        for j in range(2 * H):
            a[b, j] = sigmoid(a[b, j] + hw[b, j])
        for j in range(H):
            rh[b, j] = a[b, j] * hp[b, j]


@njit(parallel=True, **_JIT)
def _rz_rows_par(a, hw, hp, rh, bounds):
    for k in prange(len(bounds) - 1):
        _rz_rows(a, hw, hp, rh, bounds[k], bounds[k + 1])


@njit(nogil=True, fastmath={"contract"}, **_JIT)
def _n_rows(a, rw, hp, h, m, masked, b0, b1):
    """``n = tanh(a_n + (r * h_{t-1}) W_hn)`` over ``a[:, 2H:]``, and ``h``."""
    H = h.shape[1]
    for b in range(b0, b1):
        for j in range(H):
            a[b, 2 * H + j] = tanh(a[b, 2 * H + j] + rw[b, j])
        _new_state(a, hp, h, m, masked, b)


@njit(parallel=True, **_JIT)
def _n_rows_par(a, rw, hp, h, m, masked, bounds):
    for k in prange(len(bounds) - 1):
        _n_rows(a, rw, hp, h, m, masked, bounds[k], bounds[k + 1])


@njit(**_JIT)
def _forward_before(xp, Hs, RH, W_hrz, P_rz, W_hn, P_n, mask, full, grad, bounds, pmin):
    T, B, _ = xp.shape
    H = Hs.shape[2]
    hw = np.empty((B, 2 * H), xp.dtype)  # h_{t-1} W_hrz
    rw = np.empty((B, H), xp.dtype)  # (r * h_{t-1}) W_hn
    par = len(bounds) > 2
    ppar = par and B * W_hrz.size >= pmin
    for t in range(T):
        rh = RH[t] if grad else RH[0]
        product(Hs[t], W_hrz, P_rz, hw, ppar)
        if par:
            _rz_rows_par(xp[t], hw, Hs[t], rh, bounds)
        else:
            _rz_rows(xp[t], hw, Hs[t], rh, bounds[0], bounds[-1])
        product(rh, W_hn, P_n, rw, ppar)
        masked = t >= full
        m = mask[t] if masked else mask[0]
        if par:
            _n_rows_par(xp[t], rw, Hs[t], Hs[t + 1], m, masked, bounds)
        else:
            _n_rows(xp[t], rw, Hs[t], Hs[t + 1], m, masked, bounds[0], bounds[-1])


@njit(nogil=True, fastmath={"contract"}, **_JIT)
def _zn_back_rows(a, hp, dhs, dh, dan, dxp, m, masked, b0, b1):
    """``g = dh + dhs`` (left in ``dh``); ``da_z`` into ``dxp``; ``da_n`` into ``dxp`` and
    ``dan`` (the left side of the product with ``W_hn^T``).  Padded rows: zeros, ``g``
    passes."""
    H = dh.shape[1]
    for b in range(b0, b1):
        if masked and not m[b]:
            for j in range(H):
                dh[b, j] += dhs[b, j]
                dan[b, j] = 0
            for j in range(3 * H):
                dxp[b, j] = 0
            continue
        for j in range(H):
            g = dh[b, j] + dhs[b, j]
            dh[b, j] = g
            z, n = a[b, H + j], a[b, 2 * H + j]
            d_n = g * ((1 - z) * (1 - n * n))
            dxp[b, 2 * H + j] = d_n
            dan[b, j] = d_n
            dxp[b, H + j] = g * ((hp[b, j] - n) * (z * (1 - z)))


@njit(parallel=True, **_JIT)
def _zn_back_rows_par(a, hp, dhs, dh, dan, dxp, m, masked, bounds):
    for k in prange(len(bounds) - 1):
        _zn_back_rows(a, hp, dhs, dh, dan, dxp, m, masked, bounds[k], bounds[k + 1])


@njit(nogil=True, fastmath={"contract"}, **_JIT)
def _r_back_rows(a, hp, drh, dxp, darz, m, masked, b0, b1):
    """``da_r = d(rh) h_{t-1} r (1 - r)`` into ``dxp``; ``darz = [da_r, da_z]`` (the left
    side of the product with ``W_hrz^T``)."""
    H = hp.shape[1]
    for b in range(b0, b1):
        if masked and not m[b]:
            for j in range(2 * H):
                darz[b, j] = 0
            continue
        for j in range(H):
            r = a[b, j]
            d_r = drh[b, j] * (hp[b, j] * (r * (1 - r)))
            dxp[b, j] = d_r
            darz[b, j] = d_r
        for j in range(H):
            darz[b, H + j] = dxp[b, H + j]


@njit(parallel=True, **_JIT)
def _r_back_rows_par(a, hp, drh, dxp, darz, m, masked, bounds):
    for k in prange(len(bounds) - 1):
        _r_back_rows(a, hp, drh, dxp, darz, m, masked, bounds[k], bounds[k + 1])


@njit(nogil=True, **_JIT)
def _carry_before(dh, back, drh, a, m, masked):
    """``dh = g z + d(rh) r + back`` at real rows; ``g`` passes unchanged at padded ones."""
    B, H = dh.shape
    for b in range(B):
        if not masked or m[b]:
            for j in range(H):
                dh[b, j] = dh[b, j] * a[b, H + j] + drh[b, j] * a[b, j] + back[b, j]


@njit(**_JIT)
def _backward_before(A, Hs, dHs, dh, dxp, W_hnT, P_nT, W_hrzT, P_rzT, mask, full, bounds,
                     pmin):
    T, B, H = dHs.shape
    dan = np.empty((B, H), dh.dtype)
    drh = np.empty((B, H), dh.dtype)
    darz = np.empty((B, 2 * H), dh.dtype)
    back = np.empty((B, H), dh.dtype)
    par = len(bounds) > 2
    ppar = par and B * W_hrzT.size >= pmin
    for t in range(T - 1, -1, -1):
        masked = t >= full
        m = mask[t] if masked else mask[0]
        if par:
            _zn_back_rows_par(A[t], Hs[t], dHs[t], dh, dan, dxp[t], m, masked, bounds)
        else:
            _zn_back_rows(A[t], Hs[t], dHs[t], dh, dan, dxp[t], m, masked, bounds[0],
                          bounds[-1])
        product(dan, W_hnT, P_nT, drh, ppar)
        if par:
            _r_back_rows_par(A[t], Hs[t], drh, dxp[t], darz, m, masked, bounds)
        else:
            _r_back_rows(A[t], Hs[t], drh, dxp[t], darz, m, masked, bounds[0], bounds[-1])
        product(darz, W_hrzT, P_rzT, back, ppar)
        _carry_before(dh, back, drh, A[t], m, masked)


def _forward_reset_before(xp, h0, p, mask, full, grad):
    T, B, G = xp.shape
    H = G // 3
    dt = xp.dtype
    full = T if full is None else full
    a = as_c(xp, dt)  # the gate values end here (the cache's "A")
    Hs = np.empty((T + 1, B, H), dt)
    Hs[0] = h0
    RH = np.empty((T if grad else 1, B, H), dt)  # r * h_{t-1}
    W_h = p["W_h"]
    W_hrz, W_hn = as_c(W_h[:, :2 * H], dt), as_c(W_h[:, 2 * H:], dt)
    with blas_threads(1):
        _forward_before(a, Hs, RH, W_hrz, prepare(W_hrz, T), W_hn, prepare(W_hn, T),
                        mask_rows(mask, T, B), full, grad, row_chunks(B, H), split_min())
    if not grad:
        return Hs, Hs[-1], None
    cache = {"A": a, "Hs": Hs, "mask": mask, "full": full, "W_h": W_h, "after": False,
             "RH": RH}
    return Hs, Hs[-1], cache


def _backward_reset_before(dHs, dhT, cache):
    Hs, mask, full, W_h = cache["Hs"], cache["mask"], cache["full"], cache["W_h"]
    T, B, H = dHs.shape
    dt = Hs.dtype
    dh = carried(dhT, B, H, dt)
    dxp = np.empty((T, B, 3 * H), dt)  # [da_r, da_z, da_n]
    W_hnT = np.ascontiguousarray(W_h[:, 2 * H:].T, dtype=dt)
    W_hrzT = np.ascontiguousarray(W_h[:, :2 * H].T, dtype=dt)
    with blas_threads(1):
        _backward_before(as_c(cache["A"], dt), Hs, as_c(dHs, dt), dh, dxp, W_hnT,
                         prepare(W_hnT, T), W_hrzT, prepare(W_hrzT, T), mask_rows(mask, T, B),
                         full, row_chunks(B, H), split_min())
    return dxp, dh, ref.param_grads(dxp, cache)


def forward(xp, h0, p, mask=None, full=None, *, grad=True, reset_after=True):
    """:func:`rnnkit.nn.cells.gru.forward`, compiled."""
    if not reset_after:
        return _forward_reset_before(xp, h0, p, mask, full, grad)
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
    """:func:`rnnkit.nn.cells.gru.backward`, compiled."""
    if not cache["after"]:
        return _backward_reset_before(dHs, dhT, cache)
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
    """One step for generation (:func:`rnnkit.nn.cells.gru.step`): one compiled call
    (``reset_after=False``: NumPy's)."""
    if not reset_after:
        return ref.step(xp_t, h, p, reset_after=False)
    dt = h.dtype
    a = np.array(xp_t, dtype=dt, order="C")  # (B, 3H), a copy: the gates are written here
    hp = as_c(h, dt)
    out = np.empty_like(hp)
    W_h = as_c(p["W_h"], dt)
    args = (a, hp, W_h, as_c(p["b_hn"], dt), out)
    run_step(_step, args, a.shape[0] * W_h.size)
    return out
