"""Compiled LSTM time loops: the equations, cache and results of :mod:`rnnkit.nn.cells.lstm`
(the readable reference), with each step's gate arithmetic fused into one pass.

Per step the forward makes one product, ``h_{t-1} @ W_h`` (:func:`.packed.product`: on
``W_h`` packed once per call, or with BLAS), then one compiled pass over the (B, H) block (a
vectorised loop per gate and row) that forms the four gates (``exp``-based sigmoid and tanh
from :mod:`.vmath`), ``c'``, ``tanh(c')`` and ``h'``, and writes the gate values over ``xp``.
The backward makes one pass per step that forms ``da = [da_i, da_f, da_g, da_o]`` and ``dc``
from the stored gates (docs/derivations.md#lstm) and one product, ``da @ W_h^T``.  From
``B * H >= PARALLEL_MIN`` the element-wise pass is split over the batch rows with ``prange``.
Where NumPy's BLAS cannot be linked (:data:`.common.PY_LOOP_MIN`), steps from
``B * H >= PY_LOOP_MIN`` run the loop in Python around the same compiled passes
(see :func:`_forward_py`).
Without peepholes the peephole vectors are zeros, which leaves every sum exact.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..._blas import blas_threads
from .. import lstm as ref
from ..lstm import LSTMState
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


# Row bounds are never passed as constants: numba would compile a variant specialised on the
# literal value, measured three times as slow.
@njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})
def _forward_rows(a, hw, cp, c, tc, hp, h, p_i, p_f, p_o, m, masked, b0, b1):
    # One loop per gate: LLVM vectorises each of these short loops, where the single loop
    # that formed every value of a unit (eight arrays read and written) ran scalar, at about
    # twice the time per unit (H 128 and 512, float32).  Indexing the 2-D arrays directly,
    # rather than through row views, measured 1.3-1.7x faster again (H 32-512).
    H = h.shape[1]
    for b in range(b0, b1):
        for j in range(H):
            a[b, j] = sigmoid(a[b, j] + hw[b, j] + p_i[j] * cp[b, j])
        for j in range(H):
            a[b, H + j] = sigmoid(a[b, H + j] + hw[b, H + j] + p_f[j] * cp[b, j])
        for j in range(H):
            a[b, 2 * H + j] = tanh(a[b, 2 * H + j] + hw[b, 2 * H + j])
        for j in range(H):
            c[b, j] = a[b, H + j] * cp[b, j] + a[b, j] * a[b, 2 * H + j]
        for j in range(H):
            a[b, 3 * H + j] = sigmoid(a[b, 3 * H + j] + hw[b, 3 * H + j] + p_o[j] * c[b, j])
        for j in range(H):
            tcn = tanh(c[b, j])
            tc[b, j] = tcn
            h[b, j] = a[b, 3 * H + j] * tcn
        if masked and not m[b]:  # padded: the state is carried unchanged
            h[b] = hp[b]
            c[b] = cp[b]


@njit(cache=True, parallel=True, error_model="numpy")
def _forward_rows_par(a, hw, cp, c, tc, hp, h, p_i, p_f, p_o, m, masked, bounds):
    for k in prange(len(bounds) - 1):
        _forward_rows(a, hw, cp, c, tc, hp, h, p_i, p_f, p_o, m, masked, bounds[k],
                      bounds[k + 1])


@njit(cache=True, error_model="numpy")
def _forward(xp, Hs, Cs, TC, W_h, P, p_i, p_f, p_o, mask, full, grad, bounds, pmin):
    T, B, _ = xp.shape
    hw = np.empty((B, W_h.shape[1]), xp.dtype)  # (B, 4H)
    par = len(bounds) > 2
    ppar = par and B * W_h.size >= pmin
    for t in range(T):
        if grad:
            ci, co, ti = t, t + 1, t
        else:  # c_t in row (t + T + 1) % 2, so that c_T ends in Cs[-1]
            ci, co, ti = (t + T + 1) % 2, (t + T + 2) % 2, 0
        product(Hs[t], W_h, P, hw, ppar)
        masked = t >= full
        m = mask[t] if masked else mask[0]
        if par:
            _forward_rows_par(xp[t], hw, Cs[ci], Cs[co], TC[ti], Hs[t], Hs[t + 1], p_i, p_f,
                              p_o, m, masked, bounds)
        else:
            _forward_rows(xp[t], hw, Cs[ci], Cs[co], TC[ti], Hs[t], Hs[t + 1], p_i, p_f, p_o,
                          m, masked, bounds[0], bounds[-1])


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})
def _backward_rows(a, cp, tc, dhs, dh, dc, da, p_i, p_f, p_o, m, masked, b0, b1):
    """``dh`` in: the carried gradient; out: ``g^h`` (the caller adds ``da W_h^T``).  Three
    loops per row, as in :func:`_forward_rows` (1.1-1.4x faster than one, H 32-512): ``g^h``,
    ``da_o`` and ``g^c`` (left in ``dc``); ``da_i`` and ``da_g``; ``da_f`` and the new ``dc``."""
    H = dh.shape[1]
    for b in range(b0, b1):
        if masked and not m[b]:  # padded: no gate gradient, the state gradient passes
            for j in range(H):
                dh[b, j] += dhs[b, j]
            for j in range(4 * H):
                da[b, j] = 0
            continue
        for j in range(H):
            gh = dh[b, j] + dhs[b, j]
            dh[b, j] = gh
            o, tcj = a[b, 3 * H + j], tc[b, j]
            dao = gh * (tcj * (o * (1 - o)))
            da[b, 3 * H + j] = dao
            dc[b, j] += gh * (o * (1 - tcj * tcj)) + dao * p_o[j]
        for j in range(H):
            i, g, gc = a[b, j], a[b, 2 * H + j], dc[b, j]
            da[b, j] = gc * (g * (i * (1 - i)))
            da[b, 2 * H + j] = gc * (i * (1 - g * g))
        for j in range(H):
            f, gc = a[b, H + j], dc[b, j]
            daf = gc * (cp[b, j] * (f * (1 - f)))
            da[b, H + j] = daf
            dc[b, j] = gc * f + da[b, j] * p_i[j] + daf * p_f[j]


@njit(cache=True, parallel=True, error_model="numpy")
def _backward_rows_par(a, cp, tc, dhs, dh, dc, da, p_i, p_f, p_o, m, masked, bounds):
    for k in prange(len(bounds) - 1):
        _backward_rows(a, cp, tc, dhs, dh, dc, da, p_i, p_f, p_o, m, masked, bounds[k],
                       bounds[k + 1])


@njit(cache=True, error_model="numpy")
def _backward(A, Cs, TC, dHs, dh, dc, dA, W_hT, P, p_i, p_f, p_o, mask, full, bounds, pmin):
    T, B, H = dHs.shape
    back = np.empty((B, H), dh.dtype)
    par = len(bounds) > 2
    ppar = par and B * W_hT.size >= pmin
    for t in range(T - 1, -1, -1):
        masked = t >= full
        m = mask[t] if masked else mask[0]
        if par:
            _backward_rows_par(A[t], Cs[t], TC[t], dHs[t], dh, dc, dA[t], p_i, p_f, p_o, m,
                               masked, bounds)
        else:
            _backward_rows(A[t], Cs[t], TC[t], dHs[t], dh, dc, dA[t], p_i, p_f, p_o, m,
                           masked, bounds[0], bounds[-1])
        product(dA[t], W_hT, P, back, ppar)
        for b in range(B):
            if not masked or m[b]:
                dh[b] = back[b]


def _forward_py(xp, Hs, Cs, TC, W_h, P, p_i, p_f, p_o, mask, full, grad, bounds, pmin):
    """:func:`_forward` with the loop in Python, for large steps where :func:`.common.gemm`
    falls back to numba's ``np.dot``: NumPy's BLAS, and the same compiled passes."""
    T, B, _ = xp.shape
    hw = np.empty((B, W_h.shape[1]), xp.dtype)  # (B, 4H)
    rows = _forward_rows_par if len(bounds) > 2 else _forward_rows
    span = (bounds,) if len(bounds) > 2 else (bounds[0], bounds[-1])
    for t in range(T):
        ci, co, ti = (t, t + 1, t) if grad else ((t + T + 1) % 2, (t + T + 2) % 2, 0)
        np.matmul(Hs[t], W_h, out=hw)
        masked = t >= full
        rows(xp[t], hw, Cs[ci], Cs[co], TC[ti], Hs[t], Hs[t + 1], p_i, p_f, p_o,
             mask[t] if masked else mask[0], masked, *span)


def _backward_py(A, Cs, TC, dHs, dh, dc, dA, W_hT, P, p_i, p_f, p_o, mask, full, bounds, pmin):
    """:func:`_backward` with the loop in Python (see :func:`_forward_py`)."""
    T, B, H = dHs.shape
    back = np.empty((B, H), dh.dtype)
    rows = _backward_rows_par if len(bounds) > 2 else _backward_rows
    span = (bounds,) if len(bounds) > 2 else (bounds[0], bounds[-1])
    for t in range(T - 1, -1, -1):
        masked = t >= full
        m = mask[t] if masked else mask[0]
        rows(A[t], Cs[t], TC[t], dHs[t], dh, dc, dA[t], p_i, p_f, p_o, m, masked, *span)
        np.matmul(dA[t], W_hT, out=back)
        if masked:
            np.copyto(dh, back, where=m[:, None])
        else:
            dh[...] = back


def _peepholes(p, H, dt):
    if "p_i" in p:
        return tuple(as_c(p[k], dt) for k in ("p_i", "p_f", "p_o"))
    z = np.zeros(H, dt)
    return z, z, z


def forward(xp, state0, p, mask=None, full=None, *, grad=True):
    """:func:`rnnkit.nn.cells.lstm.forward`, compiled."""
    T, B, G = xp.shape
    H = G // 4
    dt = xp.dtype
    full = T if full is None else full
    a = as_c(xp, dt)  # the gate values end here (the cache's "A")
    Hs = np.empty((T + 1, B, H), dt)  # (T+1, B, H)
    Cs = np.empty((T + 1 if grad else 2, B, H), dt)
    TC = np.empty((T if grad else 1, B, H), dt)  # tanh(c_t)
    Hs[0] = state0[0]
    Cs[0 if grad else (T + 1) % 2] = state0[1]
    p_i, p_f, p_o = _peepholes(p, H, dt)
    loop = _forward_py if B * H >= PY_LOOP_MIN else _forward
    W_h = as_c(p["W_h"], dt)
    with blas_threads(1):
        loop(a, Hs, Cs, TC, W_h, prepare(W_h, T), p_i, p_f, p_o, mask_rows(mask, T, B), full,
             grad, row_chunks(B, H), split_min())
    final = LSTMState(Hs[-1], Cs[-1])
    if not grad:
        return Hs, final, None
    cache = {"A": a, "Hs": Hs, "Cs": Cs, "TC": TC, "mask": mask, "full": full, "p": p}
    return Hs, final, cache


def backward(dHs, dstateT, cache, consume=False):
    """:func:`rnnkit.nn.cells.lstm.backward`, compiled."""
    Hs, Cs, mask, full, p = (cache[k] for k in ("Hs", "Cs", "mask", "full", "p"))
    T, B, H = dHs.shape
    dt = Hs.dtype
    A, TC = as_c(cache["A"], dt), as_c(cache["TC"], dt)
    dA = A if consume else np.empty_like(A)  # (T, B, 4H)
    dh = carried(None if dstateT is None else dstateT[0], B, H, dt)
    dc = carried(None if dstateT is None else dstateT[1], B, H, dt)
    p_i, p_f, p_o = _peepholes(p, H, dt)
    loop = _backward_py if B * H >= PY_LOOP_MIN else _backward
    W_hT = np.ascontiguousarray(p["W_h"].T, dtype=dt)
    with blas_threads(1):
        loop(A, Cs, TC, as_c(dHs, dt), dh, dc, dA, W_hT, prepare(W_hT, T), p_i, p_f, p_o,
             mask_rows(mask, T, B), full, row_chunks(B, H), split_min())
    return dA, LSTMState(dh, dc), ref.param_grads(dA, Hs, Cs, p)


@njit(**{"cache": True, "error_model": "numpy"})
def _step(a, hp, cp, W_h, p_i, p_f, p_o, h, c):
    hw = np.empty_like(a)
    gemm(hp, W_h, hw)
    _forward_rows(a, hw, cp, c, np.empty_like(c), hp, h, p_i, p_f, p_o, NO_MASK, False, 0,
                  a.shape[0])


def step(xp_t, state, p):
    """One step for generation (:func:`rnnkit.nn.cells.lstm.step`): one compiled call."""
    dt = state[0].dtype
    a = np.array(xp_t, dtype=dt, order="C")  # (B, 4H), a copy: the gates are written here
    hp, cp = as_c(state[0], dt), as_c(state[1], dt)
    h, c = np.empty_like(hp), np.empty_like(cp)
    W_h = as_c(p["W_h"], dt)
    args = (a, hp, cp, W_h, *_peepholes(p, hp.shape[1], dt), h, c)
    run_step(_step, args, a.shape[0] * W_h.size)
    return LSTMState(h, c)

