"""LayerNorm LSTM and GRU (Ba, Kiros & Hinton 2016): the variant that normalises the input and
the recurrent pre-activations **separately**, and, in the LSTM, the cell state before ``tanh``.

::

    LN(u; gamma) = gamma * (u - mean(u)) / sqrt(var(u) + 1e-5)      (over the G*H gate columns)
    LSTM:  a = LN(x W_x; g_x) + LN(h W_h; g_h) + b        i, f, g, o from a as usual
           c' = f * c + i * g      h' = o * tanh(LN(c'; g_c) + b_c)
    GRU:   ax = LN(x W_x; g_x) + b,  ah = LN(h W_h; g_h)   (gates r, z, n; PyTorch placement)
           r = sigma(ax_r + ah_r)   z = sigma(ax_z + ah_z)   n = tanh(ax_n + r * (ah_n + b_hn))
           h' = (1 - z) * n + z * h

Why this variant: normalising the two pre-activations apart keeps the input from swamping the
recurrent term (their scales differ and change during training), and the statistics of
``x W_x`` do not depend on the state, so they are computed for the whole window in one pass
before the time loop, next to the one input multiply.  Normalising the cell keeps
``tanh(c)`` out of saturation on long sequences, where ``c`` can grow without bound.  The
biases ``b`` (and ``b_c``) are added after normalisation, the gains start at 1; the shifts of
the two pre-activation normalisations would only duplicate ``b``, so there are none.

The driver forms ``x W_x + b`` for every step in one multiply; the cell takes ``b`` back out
before normalising and adds it after, and its backward adds the correction
``sum(da) - sum(dxp)`` to ``db`` (docs/derivations.md#layernorm-lstm-and-gru).

>>> lstm = LayerNormLSTM(3, 5, num_layers=2, rng=0)
>>> out, (h, c), cache = lstm.forward(np.ones((2, 4, 3)))
>>> out.shape, sorted(lstm.dirs[0][0].param)
((2, 4, 5), ['W_h', 'W_x', 'b', 'b_c', 'g_c', 'g_h', 'g_x'])
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np

from ..checks import config_from_dict
from ..errors import ConfigError
from . import init as initializers
from ._blas import blas_threads
from .cells.activations import sigmoid_
from .cells.lstm import LSTMState
from .module import Module
from .recurrent import GRU, LSTM, Direction, RecurrentConfig

EPS = 1e-5
_DIRS = ("fwd", "bwd")


@dataclass
class LayerNormConfig(RecurrentConfig):
    """:class:`RecurrentConfig` of a LayerNorm LSTM or GRU."""

    layer_norm: bool = True

    def __post_init__(self):
        super().__post_init__()
        if self.cell not in ("lstm", "gru") or not self.layer_norm:
            raise ConfigError(f"layer_norm is for the LSTM and GRU, got cell {self.cell!r}")
        if self.peephole:
            raise ConfigError("a LayerNorm LSTM has no peepholes")
        if self.cell == "gru" and not self.reset_after:
            raise ConfigError("the LayerNorm GRU has the reset gate after the recurrent multiply "
                              "(reset_after=True)")

    @classmethod
    def from_dict(cls, d: dict) -> LayerNormConfig:
        return config_from_dict(cls, d, "recurrent")


# -- layer normalisation over the last axis -----------------------------------------------------
def norm(u):
    """``(u_hat, inv)``: ``u_hat = (u - mean) * inv``, ``inv = 1 / sqrt(var + EPS)`` (..., 1)."""
    u_hat = u - u.mean(axis=-1, keepdims=True)
    inv = 1.0 / np.sqrt((u_hat * u_hat).mean(axis=-1, keepdims=True) + EPS)
    u_hat *= inv
    return u_hat, inv


def norm_backward(du_hat, u_hat, inv):
    """``du`` from ``du_hat``: ``inv * (du_hat - mean(du_hat) - u_hat * mean(du_hat u_hat))``."""
    return inv * (du_hat - du_hat.mean(axis=-1, keepdims=True)
                  - u_hat * (du_hat * u_hat).mean(axis=-1, keepdims=True))


# -- the cells ----------------------------------------------------------------------------------
def _input_part(xp, p):
    """``LN(x W_x; g_x) + b`` for every step at once, from the driver's ``xp = x W_x + b``."""
    X_hat, inv_x = norm(xp - p["b"])
    return X_hat * p["g_x"] + p["b"], X_hat, inv_x


def lstm_forward(xp, state0, p, mask=None, full=None, *, grad=True):
    T, B, G = xp.shape
    H = G // 4
    dt = xp.dtype
    full = T if full is None else full
    A, X_hat, inv_x = _input_part(xp, p)  # A (T, B, 4H): becomes the gate activations
    Hs, Cs = np.empty((T + 1, B, H), dt), np.empty((T + 1, B, H), dt)
    Uh_hat, inv_h = np.empty((T, B, G), dt), np.empty((T, B, 1), dt)
    C_hat, inv_c, TY = np.empty((T, B, H), dt), np.empty((T, B, 1), dt), np.empty((T, B, H), dt)
    Hs[0], Cs[0] = state0
    with blas_threads(1):
        for t in range(T):
            Uh_hat[t], inv_h[t] = norm(Hs[t] @ p["W_h"])
            a = A[t]
            a += Uh_hat[t] * p["g_h"]
            sigmoid_(a[:, : 2 * H])
            np.tanh(a[:, 2 * H : 3 * H], out=a[:, 2 * H : 3 * H])
            sigmoid_(a[:, 3 * H :])
            Cs[t + 1] = a[:, H : 2 * H] * Cs[t] + a[:, :H] * a[:, 2 * H : 3 * H]
            C_hat[t], inv_c[t] = norm(Cs[t + 1])
            np.tanh(C_hat[t] * p["g_c"] + p["b_c"], out=TY[t])
            np.multiply(a[:, 3 * H :], TY[t], out=Hs[t + 1])
            if t >= full:
                np.copyto(Hs[t + 1], Hs[t], where=~mask[t])
                np.copyto(Cs[t + 1], Cs[t], where=~mask[t])
    cache = {"A": A, "X_hat": X_hat, "inv_x": inv_x, "Uh_hat": Uh_hat, "inv_h": inv_h,
             "C_hat": C_hat, "inv_c": inv_c, "TY": TY, "Hs": Hs, "Cs": Cs, "mask": mask,
             "full": full, "p": p}
    return Hs, LSTMState(Hs[-1], Cs[-1]), (cache if grad else None)


def _finish(dA, dAh, DUh, cache, dparams):
    """The parameter gradients every cell shares, after the loop (one pass each): ``dA`` the
    gradient of the gate pre-activations, ``dAh`` of the normalised recurrent part (the same
    for the LSTM), ``DUh`` of ``h W_h``."""
    p, Hs = cache["p"], cache["Hs"]
    T, B, G = dA.shape
    H = Hs.shape[-1]
    dparams["g_h"] = np.einsum("tbg,tbg->g", dAh, cache["Uh_hat"])
    dparams["W_h"] = Hs[:-1].reshape(T * B, H).T @ DUh.reshape(T * B, G)
    dparams["g_x"] = np.einsum("tbg,tbg->g", dA, cache["X_hat"])
    dxp = norm_backward(dA * p["g_x"], cache["X_hat"], cache["inv_x"])  # (T, B, G)
    dparams["b"] = dA.sum(axis=(0, 1)) - dxp.sum(axis=(0, 1))  # + the driver's sum(dxp)
    return dxp, dparams


def lstm_backward(dHs, dstateT, cache, consume=False):
    A, Hs, Cs, TY = cache["A"], cache["Hs"], cache["Cs"], cache["TY"]
    C_hat, inv_c, p, mask, full = cache["C_hat"], cache["inv_c"], cache["p"], cache["mask"], \
        cache["full"]
    T, B, H = dHs.shape
    dt = Hs.dtype
    dh = np.zeros((B, H), dt) if dstateT is None else np.array(dstateT[0], dtype=dt)
    dc = np.zeros((B, H), dt) if dstateT is None else np.array(dstateT[1], dtype=dt)
    dA, DUh, DY = np.empty_like(A), np.empty_like(A), np.empty((T, B, H), dt)
    W_hT = np.ascontiguousarray(p["W_h"].T)
    with blas_threads(1):
        for t in range(T - 1, -1, -1):
            a, da = A[t], dA[t]
            i, f, g, o = a[:, :H], a[:, H : 2 * H], a[:, 2 * H : 3 * H], a[:, 3 * H :]
            gh = dh + dHs[t]
            da[:, 3 * H :] = gh * TY[t] * o * (1 - o)
            dy = DY[t]
            np.multiply(gh * o, 1 - TY[t] * TY[t], out=dy)
            gc = dc + norm_backward(dy * p["g_c"], C_hat[t], inv_c[t])
            da[:, :H] = gc * g * i * (1 - i)
            da[:, H : 2 * H] = gc * Cs[t] * f * (1 - f)
            da[:, 2 * H : 3 * H] = gc * i * (1 - g * g)
            DUh[t] = norm_backward(da * p["g_h"], cache["Uh_hat"][t], cache["inv_h"][t])
            dh_prev, dc_prev = DUh[t] @ W_hT, gc * f
            if t >= full:
                m = mask[t]
                da *= m
                dy *= m
                DUh[t] *= m
                dh_prev, dc_prev = np.where(m, dh_prev, gh), np.where(m, dc_prev, dc)
            dh, dc = dh_prev, dc_prev
    dparams = {"g_c": np.einsum("tbh,tbh->h", DY, C_hat), "b_c": DY.sum(axis=(0, 1))}
    dxp, dparams = _finish(dA, dA, DUh, cache, dparams)
    return dxp, LSTMState(dh, dc), dparams


def lstm_step(xp_t, state, p):
    return lstm_forward(xp_t[None].copy(), state, p, grad=False)[1]


def gru_forward(xp, h0, p, mask=None, full=None, *, grad=True, reset_after=True):
    # reset_after: always True here (the layer refuses False); taken as the GRU cells take it
    T, B, G = xp.shape
    H = G // 3
    dt = xp.dtype
    full = T if full is None else full
    A, X_hat, inv_x = _input_part(xp, p)  # becomes [r, z, n]
    Hs = np.empty((T + 1, B, H), dt)
    Uh_hat, inv_h, Q = np.empty((T, B, G), dt), np.empty((T, B, 1), dt), np.empty((T, B, H), dt)
    Hs[0] = h0
    with blas_threads(1):
        for t in range(T):
            Uh_hat[t], inv_h[t] = norm(Hs[t] @ p["W_h"])
            ah = Uh_hat[t] * p["g_h"]
            a = A[t]
            a[:, : 2 * H] += ah[:, : 2 * H]
            sigmoid_(a[:, : 2 * H])
            np.add(ah[:, 2 * H :], p["b_hn"], out=Q[t])  # ah_n + b_hn
            n = a[:, 2 * H :]
            n += a[:, :H] * Q[t]
            np.tanh(n, out=n)
            Hs[t + 1] = n + a[:, H : 2 * H] * (Hs[t] - n)
            if t >= full:
                np.copyto(Hs[t + 1], Hs[t], where=~mask[t])
    cache = {"A": A, "X_hat": X_hat, "inv_x": inv_x, "Uh_hat": Uh_hat, "inv_h": inv_h, "Q": Q,
             "Hs": Hs, "mask": mask, "full": full, "p": p}
    return Hs, Hs[-1], (cache if grad else None)


def gru_backward(dHs, dhT, cache, consume=False):
    A, Hs, Q, p, mask, full = cache["A"], cache["Hs"], cache["Q"], cache["p"], cache["mask"], \
        cache["full"]
    T, B, H = dHs.shape
    dt = Hs.dtype
    dh = np.zeros((B, H), dt) if dhT is None else np.array(dhT, dtype=dt)
    dA, dAh, DUh = np.empty_like(A), np.empty_like(A), np.empty_like(A)
    W_hT = np.ascontiguousarray(p["W_h"].T)
    with blas_threads(1):
        for t in range(T - 1, -1, -1):
            r, z, n = A[t, :, :H], A[t, :, H : 2 * H], A[t, :, 2 * H :]
            g = dh + dHs[t]
            da, dah = dA[t], dAh[t]
            da[:, 2 * H :] = g * (1 - z) * (1 - n * n)
            da[:, H : 2 * H] = g * (Hs[t] - n) * z * (1 - z)
            da[:, :H] = da[:, 2 * H :] * Q[t] * r * (1 - r)
            dah[:, : 2 * H] = da[:, : 2 * H]
            dah[:, 2 * H :] = da[:, 2 * H :] * r
            DUh[t] = norm_backward(dah * p["g_h"], cache["Uh_hat"][t], cache["inv_h"][t])
            dh_prev = DUh[t] @ W_hT + g * z
            if t >= full:
                m = mask[t]
                da *= m
                dah *= m
                DUh[t] *= m
                dh_prev = np.where(m, dh_prev, g)
            dh = dh_prev
    dparams = {"b_hn": dAh[..., 2 * H :].sum(axis=(0, 1))}
    dxp, dparams = _finish(dA, dAh, DUh, cache, dparams)
    return dxp, dh, dparams


def gru_step(xp_t, h, p, reset_after=True):
    return gru_forward(xp_t[None].copy(), h, p, grad=False)[1]


# -- the layers -----------------------------------------------------------------------------------
def _directions(layer, cfg: LayerNormConfig, rng):
    """The plain directions' ``W_x``, ``W_h``, ``b`` (``b_hn``) plus the gains (ones) and the
    LSTM's cell normalisation ``g_c``, ``b_c``."""
    G = 4 if cfg.cell == "lstm" else 3
    H, dt = cfg.hidden_size, np.dtype(cfg.dtype)
    layer.dirs = []
    for k in range(cfg.num_layers):
        D = cfg.input_size if k == 0 else H * cfg.dirs
        row = []
        for d in range(cfg.dirs):
            unit = layer.add_module(f"layers.{k}.{_DIRS[d]}", Direction(cfg, D, rng))
            unit.add_param("g_x", np.ones(G * H, dt))
            unit.add_param("g_h", np.ones(G * H, dt))
            if cfg.cell == "lstm":
                unit.add_param("g_c", np.ones(H, dt))
                unit.add_param("b_c", np.zeros(H, dt))
            row.append(unit)
        layer.dirs.append(row)


# the two cells in the contract of rnnkit.nn.cells (forward, backward, step), as the layers'
# driver calls them
LSTM_CELL = SimpleNamespace(forward=lstm_forward, backward=lstm_backward, step=lstm_step)
GRU_CELL = SimpleNamespace(forward=gru_forward, backward=gru_backward, step=gru_step)


class _LayerNorm:
    """Construction shared by the two LayerNorm layers (a mixin before LSTM / GRU)."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, *,
                 bidirectional: bool = False, dropout: float = 0.0, dtype="float32",
                 rng=None, **options):
        Module.__init__(self)
        self.cfg = LayerNormConfig(
            cell=self.cell, input_size=input_size, hidden_size=hidden_size,
            num_layers=num_layers, bidirectional=bidirectional, dropout=dropout,
            dtype=np.dtype(dtype).name, **options)
        rng = initializers.as_rng(rng)
        self.dropout_rng = rng
        _directions(self, self.cfg, rng)

    @classmethod
    def from_config(cls, cfg, rng=None):
        cfg = cfg if isinstance(cfg, LayerNormConfig) else LayerNormConfig.from_dict(cfg)
        klass = LayerNormLSTM if cfg.cell == "lstm" else LayerNormGRU
        opts = {k: getattr(cfg, k) for k in ("locked", "weight_drop", "init", "init_scale")
                if hasattr(cfg, k)}
        if cfg.cell == "lstm":
            opts["forget_bias"] = cfg.forget_bias
        return klass(cfg.input_size, cfg.hidden_size, cfg.num_layers,
                     bidirectional=cfg.bidirectional, dropout=cfg.dropout, dtype=cfg.dtype,
                     rng=rng, **opts)


class LayerNormLSTM(_LayerNorm, LSTM):
    """LayerNorm LSTM (see the module docstring); the API of :class:`LSTM`."""

    def _cell(self, dtype):
        return LSTM_CELL


class LayerNormGRU(_LayerNorm, GRU):
    """LayerNorm GRU (see the module docstring); the API of :class:`GRU`."""

    def _cell(self, dtype):
        return GRU_CELL
