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

The forward pass takes the four gates of a step in one block (B, 4H), in one of two ways chosen
by size.  From ``B * H >= 1024`` it goes through ``exp``, which NumPy evaluates two to three
times as fast as ``tanh`` in float32: ``sigma(a) = 1 / (1 + exp(-a))`` and
``tanh(a) = 2 sigma(2a) - 1``, the factors -1 (sigmoid gates) and -2 (``g``) folded once into
the input projections and a scaled copy of ``W_h``; each step runs ``exp``, ``+ 1``, ``1 / x``
(and ``2 x - 1`` on ``g``).  Smaller blocks are bound by the cost of a NumPy call, so they use
the form with fewer calls, ``sigma(a) = tanh(a / 2) / 2 + 1 / 2``: ``tanh`` and one affine
map.  ``tanh(c')`` likewise goes through ``exp`` from ``B * H >= 4096``.  ``exp`` may overflow
to ``inf`` for huge pre-activations; ``1 / inf = 0`` is then the exact limit, so the overflow is
silenced.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .._blas import blas_threads
from .activations import gate_scales, gate_slice


def _gate(g: str, H: int) -> slice:
    return gate_slice("lstm", g, H)


class LSTMState(NamedTuple):
    """LSTM state: hidden ``h`` and cell ``c``, same shape."""

    h: np.ndarray
    c: np.ndarray


_EXP_GATES = 1024  # B * H from which the gates go through exp (measured crossover)
_EXP_TANH = 4096  # B * H from which tanh(c) does


def _gates(x, pre, shift, via_exp, g):
    """In place over a block of gate columns holding ``pre * a``: the activations.  ``via_exp``:
    ``pre`` is -1 (sigmoid) / -2 (tanh, the columns ``g``); else 0.5 / 1 and ``shift`` the
    affine map that turns ``tanh(a / 2)`` into ``sigma(a)``."""
    if via_exp:
        _sigmoid_of_neg(x)
        if g is not None:
            g *= 2
            g -= 1
    else:
        np.tanh(x, out=x)
        x *= pre
        x += shift


def _sigmoid_of_neg(x):
    """In place: ``x`` holds ``-a``; leaves ``sigma(a) = 1 / (1 + exp(-a))``."""
    np.exp(x, out=x)
    x += 1
    np.divide(1, x, out=x)


def _tanh_into(c, out):
    """``out = tanh(c) = 2 / (1 + exp(-2c)) - 1`` (``out`` must not be ``c``)."""
    np.multiply(c, -2, out=out)
    np.exp(out, out=out)
    out += 1
    np.divide(2, out, out=out)
    out -= 1


def forward(xp, state0, p, mask=None, full=None, *, grad=True):
    """Run the cell over ``xp`` (T, B, 4H) = ``x W_x + b`` from ``state0 = (h0, c0)``.

    Returns ``(Hs, LSTMState(h_T, c_T), cache)``: ``Hs`` (T+1, B, H) with ``Hs[0] = h0``.
    ``xp`` becomes the cache's gate activations ``A`` (in place); the cache also holds every
    cell state ``Cs`` (T+1, B, H) and ``TC = tanh(c_t)`` (T, B, H).  With ``grad=False``
    (evaluation: no backward will follow) no history is kept for one: the cell states use two
    rows in turn, and the cache is ``None``.
    """
    T, B, G = xp.shape
    H = G // 4
    dt = xp.dtype
    full = T if full is None else full
    via_exp, exp_tanh = B * H >= _EXP_GATES, B * H >= _EXP_TANH
    pre, shift = gate_scales("lstm", H, dt)
    if via_exp:  # -1 on the sigmoid gates, -2 on g: exp then gives every gate (see above)
        pre = -2 * pre
    xp *= pre
    W_hs = p["W_h"] * pre  # (H, 4H)
    peep = "p_i" in p
    Hs = np.empty((T + 1, B, H), dt)  # (T+1, B, H)
    if grad:
        Cs = np.empty((T + 1, B, H), dt)
        TC = np.empty((T, B, H), dt)  # tanh(c_t)
        c_at, tc_at = (lambda t: t), (lambda t: t)
    else:  # c_t in row (t + T + 1) % 2, so that c_T ends in Cs[-1]; tanh(c_t) is scratch
        Cs = np.empty((2, B, H), dt)
        TC = np.empty((1, B, H), dt)
        c_at, tc_at = (lambda t: (t + T + 1) % 2), (lambda t: 0)
    Hs[0], Cs[c_at(0)] = state0
    tmp = np.empty((B, G), dt)
    tmpH = np.empty((B, H), dt)
    if peep:
        p_i, p_f, p_o = (pre[0] * p[k] for k in ("p_i", "p_f", "p_o"))
    with np.errstate(over="ignore"), blas_threads(1):  # small multiplies: one thread
        for t in range(T):
            a = xp[t]
            np.matmul(Hs[t], W_hs, out=tmp)
            a += tmp
            c_prev, c, tc = Cs[c_at(t)], Cs[c_at(t + 1)], TC[tc_at(t)]
            i, f, g, o = (a[:, _gate(k, H)] for k in "ifgo")
            if peep:
                np.multiply(c_prev, p_i, out=tmpH)
                i += tmpH
                np.multiply(c_prev, p_f, out=tmpH)
                f += tmpH
                _gates(a[:, : 3 * H], pre[: 3 * H], shift[: 3 * H], via_exp, g)
            else:
                _gates(a, pre, shift, via_exp, g)
            np.multiply(f, c_prev, out=c)
            np.multiply(i, g, out=tmpH)
            c += tmpH
            if peep:
                np.multiply(c, p_o, out=tmpH)
                o += tmpH
                _gates(o, pre[_gate("o", H)], shift[_gate("o", H)], via_exp, None)
            if exp_tanh:
                _tanh_into(c, tc)
            else:
                np.tanh(c, out=tc)
            np.multiply(o, tc, out=Hs[t + 1])
            if t >= full:
                inv = ~mask[t]
                np.copyto(Hs[t + 1], Hs[t], where=inv)
                np.copyto(c, c_prev, where=inv)
    final = LSTMState(Hs[-1], Cs[-1])
    if not grad:
        return Hs, final, None
    cache = {"A": xp, "Hs": Hs, "Cs": Cs, "TC": TC, "mask": mask, "full": full, "p": p}
    return Hs, final, cache


_BLOCK = 1 << 16  # elements (B*H per step) in a block of steps whose factors are formed at once


def _factors(A, TC, Cprev, dA, Q, F):
    """The factors of one block of steps: in ``dA`` those that multiply ``gc`` (for i, f, g)
    and ``gh`` (for o), in ``Q`` the ``c' -> h'`` path ``o (1 - tanh(c')^2)``, in ``F`` the
    forget gate.  ``dA`` may be ``A`` and ``Q`` may be ``TC``: the order below allows that."""
    H = Cprev.shape[-1]
    I, Fg, Gc, O = (A[..., _gate(k, H)] for k in "ifgo")
    dI, dF, dG, dO = (dA[..., _gate(k, H)] for k in "ifgo")
    W = F  # scratch until the end
    np.multiply(Gc, Gc, out=W)
    np.subtract(1, W, out=W)
    W *= I  # (1 - g^2) i
    np.multiply(Gc, I, out=dG)
    np.subtract(1, I, out=dI)
    dI *= dG  # i (1 - i) g
    np.copyto(dG, W)
    np.subtract(1, O, out=W)
    W *= TC  # (1 - o) tanh(c)
    np.multiply(TC, TC, out=Q)
    np.subtract(1, Q, out=Q)
    Q *= O
    np.multiply(O, W, out=dO)  # o (1 - o) tanh(c)
    np.copyto(F, Fg)
    np.subtract(1, Fg, out=dF)
    dF *= F
    dF *= Cprev  # f (1 - f) c_prev


def backward(dHs, dstateT, cache, consume=False):
    """Backpropagate ``dHs`` (T, B, H) (and ``dstateT``, the gradient of the final state).

    Returns ``(dA (T, B, 4H), dstate0, {"W_h": ...[, peepholes]})``.  With ``consume`` the
    cache is spent: ``dA`` is formed in the cache's own ``A`` and ``TC`` is overwritten, which
    saves the largest allocation of the pass (and its page faults); the caller must not use
    that cache again.  By default the cache is left as it was.

    The step loop runs over blocks of steps, latest first; each block's factors are formed
    just before its steps, while they are still in cache (whole-sequence passes would stream
    the (T, B, H) arrays through memory a dozen times).
    """
    A, Hs, Cs, TC = cache["A"], cache["Hs"], cache["Cs"], cache["TC"]
    mask, full, p = cache["mask"], cache["full"], cache["p"]
    T, B, H = dHs.shape
    dt = Hs.dtype
    peep = "p_i" in p
    Cprev = Cs[:-1]
    dA = A if consume else np.empty_like(A)  # (T, B, 4H)
    K = max(1, min(T, _BLOCK // (B * H)))  # steps per block
    Qb = np.empty((K, B, H), dt)  # (K, B, H) unless formed in TC
    Fb = np.empty((K, B, H), dt)  # (K, B, H) f, or 1 at padded steps: c passes through
    if dstateT is None:
        dh, dc = np.zeros((B, H), dt), np.zeros((B, H), dt)
    else:
        dh, dc = np.array(dstateT[0], dtype=dt), np.array(dstateT[1], dtype=dt)
    W_hT = np.ascontiguousarray(p["W_h"].T)
    tmpH = np.empty((B, H), dt)
    if peep:
        p_i, p_f, p_o = p["p_i"], p["p_f"], p["p_o"]
    with blas_threads(1):  # small multiplies: one thread
        for t1 in range(T, 0, -K):
            t0 = max(0, t1 - K)
            blk = slice(t0, t1)
            Q, Fm = (TC[blk] if consume else Qb[: t1 - t0]), Fb[: t1 - t0]
            _factors(A[blk], TC[blk], Cprev[blk], dA[blk], Q, Fm)
            if mask is not None:
                dA[blk] *= mask[blk]
                Q *= mask[blk]
                np.copyto(Fm, 1, where=~mask[blk])
            for t in range(t1 - 1, t0 - 1, -1):
                dh += dHs[t]
                np.multiply(dh, Q[t - t0], out=tmpH)
                dc += tmpH
                da = dA[t]
                da[:, _gate("o", H)] *= dh
                if peep:
                    np.multiply(da[:, _gate("o", H)], p_o, out=tmpH)
                    dc += tmpH
                da[:, : 3 * H].reshape(B, 3, H)[...] *= dc[:, None, :]
                dc *= Fm[t - t0]
                if peep:
                    np.multiply(da[:, _gate("i", H)], p_i, out=tmpH)
                    dc += tmpH
                    np.multiply(da[:, _gate("f", H)], p_f, out=tmpH)
                    dc += tmpH
                if t >= full:
                    np.matmul(da, W_hT, out=tmpH)
                    np.copyto(dh, tmpH, where=mask[t])
                else:
                    np.matmul(da, W_hT, out=dh)
    return dA, LSTMState(dh, dc), param_grads(dA, Hs, Cs, p)


def param_grads(dA, Hs, Cs, p) -> dict:
    """``dW_h`` (and the peepholes' gradients) from ``dA`` (T, B, 4H), one multiply each after
    the loop; the compiled backward shares it."""
    T, B, H = Hs.shape[0] - 1, Hs.shape[1], Hs.shape[2]
    dparams = {"W_h": Hs[:-1].reshape(T * B, H).T @ dA.reshape(T * B, 4 * H)}
    if "p_i" in p:
        dI, dF, dO = (dA[..., _gate(g, H)] for g in "ifo")
        dparams["p_i"] = np.einsum("tbh,tbh->h", dI, Cs[:-1])
        dparams["p_f"] = np.einsum("tbh,tbh->h", dF, Cs[:-1])
        dparams["p_o"] = np.einsum("tbh,tbh->h", dO, Cs[1:])
    return dparams


def step(xp_t, state, p):
    """One LSTM step for generation: ``xp_t`` (B, 4H) = ``x W_x + b``; returns the new state."""
    h, c = state
    H = h.shape[-1]
    a = h @ p["W_h"]
    a += xp_t
    i, f, g, o = (a[:, _gate(k, H)] for k in "ifgo")
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
