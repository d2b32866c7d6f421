"""GRU cell, gates packed ``r, z, n`` (PyTorch order), in both placements of the reset gate.

``reset_after=True`` (cuDNN / PyTorch, the default)::

    r = sigma(x W_xr + h W_hr + b_r)        z = sigma(x W_xz + h W_hz + b_z)
    n = tanh(x W_xn + b_n + r * (h W_hn + b_hn))
    h' = (1 - z) * n + z * h  =  n + z * (h - n)

``reset_after=False`` (Cho et al. 2014): ``n = tanh(x W_xn + b_n + (r * h) W_hn)``, no ``b_hn``.

Backward (docs/derivations.md#gru): with ``g = dh' (+ dHs_t)``::

    da_n = g (1 - z)(1 - n^2)      da_z = g (h - n) z (1 - z)
    after:  dhn = da_n r,  da_r = da_n hn r (1 - r),   dh = g z + [da_r, da_z, dhn] W_h^T
    before: d(rh) = da_n W_hn^T,  da_r = d(rh) h r (1 - r),
            dh = g z + d(rh) r + [da_r, da_z] W_hrz^T

Every factor that multiplies ``g`` is known after the forward pass, so they are formed for the
whole sequence at once before the backward loop, leaving a handful of operations per step.
"""

from __future__ import annotations

import numpy as np

from .._blas import blas_threads
from .activations import gate_scales, gate_slice


def _gate(g: str, H: int) -> slice:
    return gate_slice("gru", g, H)


def forward(xp, h0, p, mask=None, full=None, *, grad=True, reset_after=True):
    T, B, G = xp.shape
    H = G // 3
    full = T if full is None else full
    W_h = p["W_h"]
    pre, _ = gate_scales("gru", H, xp.dtype)
    xp *= pre  # sigmoid gates via tanh(a / 2): halve their pre-activations once
    Hs = np.empty((T + 1, B, H), dtype=xp.dtype)  # (T+1, B, H)
    Hs[0] = h0
    tmpH = np.empty((B, H), xp.dtype)
    cache = {"A": xp, "Hs": Hs, "mask": mask, "full": full, "W_h": W_h, "after": reset_after}
    if reset_after:
        W_hs = W_h * pre  # (H, 3H)
        b_hn = p["b_hn"]
        HN = np.empty((T, B, H), xp.dtype)  # h W_hn + b_hn, needed by the backward
        tmp = np.empty((B, G), xp.dtype)
        cache["HN"] = HN
    else:
        W_hrz = W_h[:, : 2 * H] * 0.5  # (H, 2H)
        W_hn = np.ascontiguousarray(W_h[:, _gate("n", H)])  # (H, H)
        RH = np.empty((T, B, H), xp.dtype)  # r * h_{t-1}
        tmp = np.empty((B, 2 * H), xp.dtype)
        cache["RH"] = RH
    with blas_threads(1):  # small multiplies: one thread
        for t in range(T):
            a, h_prev, h = xp[t], Hs[t], Hs[t + 1]
            rz, n = a[:, : 2 * H], a[:, _gate("n", H)]
            if reset_after:
                np.matmul(h_prev, W_hs, out=tmp)
                rz += tmp[:, : 2 * H]
                np.add(tmp[:, _gate("n", H)], b_hn, out=HN[t])
            else:
                np.matmul(h_prev, W_hrz, out=tmp)
                rz += tmp
            np.tanh(rz, out=rz)
            rz *= 0.5
            rz += 0.5
            r, z = a[:, _gate("r", H)], a[:, _gate("z", H)]
            if reset_after:
                np.multiply(r, HN[t], out=tmpH)
            else:
                np.multiply(r, h_prev, out=RH[t])
                np.matmul(RH[t], W_hn, out=tmpH)
            n += tmpH
            np.tanh(n, out=n)
            np.subtract(h_prev, n, out=h)
            h *= z
            h += n
            if t >= full:
                np.copyto(h, h_prev, where=~mask[t])
    return Hs, Hs[-1], cache if grad else None


def backward(dHs, dhT, cache, consume=False):
    A, Hs, mask, W_h = cache["A"], cache["Hs"], cache["mask"], cache["W_h"]
    T, B, H = dHs.shape
    dt = Hs.dtype
    R, Z, N = (A[..., _gate(g, H)] for g in "rzn")
    Hprev = Hs[:-1]
    # Factors that multiply the incoming gradient g_t, for all steps at once.
    Dn = (1 - Z) * (1 - N * N)  # (T, B, H)
    Dz = (Hprev - N) * Z * (1 - Z)
    Zm = Z if mask is None else np.where(mask, Z, 1).astype(dt)  # padded: h passes through
    dHt = np.empty((T, B, H), dt)  # g_t for every step
    dh = np.zeros((B, H), dt) if dhT is None else np.array(dhT, dtype=dt)
    tmpH = np.empty((B, H), dt)
    if cache["after"]:
        HN = cache["HN"]
        F = np.empty((T, B, 3, H), dt)  # factors of [da_r, da_z, dhn]
        F[:, :, 0] = Dn * HN * R * (1 - R)
        F[:, :, 1] = Dz
        F[:, :, 2] = Dn * R
        if mask is not None:
            F *= mask[..., None]
        dHP = np.empty((T, B, 3, H), dt)  # [da_r, da_z, dhn]
        W_hT = np.ascontiguousarray(W_h.T)
        with blas_threads(1):  # small multiplies: one thread
            for t in range(T - 1, -1, -1):
                g = dHt[t]
                np.add(dh, dHs[t], out=g)
                np.multiply(F[t], g[:, None, :], out=dHP[t])
                np.matmul(dHP[t].reshape(B, 3 * H), W_hT, out=dh)
                np.multiply(g, Zm[t], out=tmpH)
                dh += tmpH
        dHP = dHP.reshape(T, B, 3 * H)
        dxp = dHP.copy()
        np.multiply(Dn, dHt, out=dxp[..., _gate("n", H)])
        if mask is not None:
            dxp[..., _gate("n", H)] *= mask
        dparams = param_grads(dHP, cache)
    else:
        F = np.empty((T, B, 2, H), dt)  # factors of [da_z, da_n]
        F[:, :, 0] = Dz
        F[:, :, 1] = Dn
        Drh = Hprev * R * (1 - R)
        if mask is not None:
            F *= mask[..., None]
        dxp = np.empty((T, B, 3 * H), dt)
        W_hnT = np.ascontiguousarray(W_h[:, _gate("n", H)].T)
        W_hrzT = np.ascontiguousarray(W_h[:, : 2 * H].T)
        dRH = np.empty((B, H), dt)
        with blas_threads(1):  # small multiplies: one thread
            for t in range(T - 1, -1, -1):
                g = dHt[t]
                np.add(dh, dHs[t], out=g)
                d = dxp[t]
                np.multiply(F[t], g[:, None, :], out=d[:, H:].reshape(B, 2, H))
                np.matmul(d[:, _gate("n", H)], W_hnT, out=dRH)
                np.multiply(dRH, Drh[t], out=d[:, _gate("r", H)])
                np.matmul(d[:, : 2 * H], W_hrzT, out=dh)
                np.multiply(dRH, R[t], out=tmpH)
                dh += tmpH
                np.multiply(g, Zm[t], out=tmpH)
                dh += tmpH
        dparams = param_grads(dxp, cache)
    return dxp, dh, dparams


def param_grads(dW, cache) -> dict:
    """``dW_h`` (and ``db_hn``) in one multiply per block after the loop, from ``dW``
    (T, B, 3H), the gradient of what multiplies ``W_h``: ``[da_r, da_z, dhn]`` with the reset
    gate after, ``dxp`` before.  The compiled backward shares it."""
    Hs, W_h = cache["Hs"], cache["W_h"]
    T, B, G = dW.shape
    H = G // 3
    Hprev = Hs[:-1].reshape(T * B, H)
    d2 = dW.reshape(T * B, G)
    if cache["after"]:
        return {"W_h": Hprev.T @ d2, "b_hn": d2[:, _gate("n", H)].sum(axis=0)}
    dW_h = np.empty_like(W_h)
    dW_h[:, : 2 * H] = Hprev.T @ d2[:, : 2 * H]
    dW_h[:, _gate("n", H)] = cache["RH"].reshape(T * B, H).T @ d2[:, _gate("n", H)]
    return {"W_h": dW_h}


def step(xp_t, h, p, *, reset_after=True):
    """One GRU step for generation: ``xp_t`` (B, 3H) = ``x W_x + b``; returns the new h."""
    H = h.shape[-1]
    hp = h @ p["W_h"]  # (B, 3H)
    rz = xp_t[:, : 2 * H] + hp[:, : 2 * H]
    rz *= 0.5
    np.tanh(rz, out=rz)
    rz *= 0.5
    rz += 0.5
    r, z = rz[:, _gate("r", H)], rz[:, _gate("z", H)]
    if reset_after:
        n = r * (hp[:, _gate("n", H)] + p["b_hn"])
    else:
        n = (r * h) @ p["W_h"][:, _gate("n", H)]
    n += xp_t[:, _gate("n", H)]
    np.tanh(n, out=n)
    return n + z * (h - n)
