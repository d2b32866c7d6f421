"""Projection LSTM (LSTMP, Sak, Senior & Beaufays 2014): the LSTM whose output, and recurrent
input, is a linear projection of ``o * tanh(c)`` to ``P < H`` units.

::

    a = x W_x + r W_h + b          (W_x (D, 4H), W_h (P, 4H): the recurrent weights act on r)
    i, f, g, o = sigma(a_i), sigma(a_f), tanh(a_g), sigma(a_o)
    c' = f * c + i * g
    m' = o * tanh(c')              (H,) the ordinary LSTM output
    r' = m' W_hr                   (P,) the projected output: layer output and next state

This is ``torch.nn.LSTM(proj_size=P)`` (``W_hr = weight_hr.T``); ``rnnkit.interop`` converts
both ways.  The state is ``LSTMState(h, c)`` with ``h`` (L * dirs, B, P) and ``c``
(L * dirs, B, H), as in PyTorch.  The recurrent multiply shrinks from ``H x 4H`` to
``P x 4H`` and the next layer reads ``P`` features per direction.

Backward (docs/derivations.md#projection-lstm), with ``gr = dr' (+ dHs_t)`` and ``gc = dc'``::

    dm = gr W_hr^T                 dW_hr = sum_t m_t^T gr_t
    da_o = dm tanh(c') o (1 - o)   gc += dm o (1 - tanh(c')^2)
    da_i = gc g i (1 - i)   da_f = gc c f (1 - f)   da_g = gc i (1 - g^2)
    dc = gc f                      dr = da W_h^T

Pitfall: the layer's width is ``P`` (``output_size`` is ``P * dirs``), ``hidden_size`` is
still the cell's ``H``.

>>> lstm = LSTMP(3, 8, proj_size=4, num_layers=2, rng=0)
>>> out, (h, c), cache = lstm.forward(np.ones((2, 5, 3)))
>>> out.shape, h.shape, c.shape
((2, 5, 4), (2, 2, 4), (2, 2, 8))
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np

from ..checks import check_array, config_from_dict
from ..errors import ConfigError
from . import init as initializers
from ._blas import blas_threads
from .cells.activations import gate_slice, sigmoid_
from .cells.lstm import LSTMState
from .module import Module
from .recurrent import LSTM, RecurrentConfig

_DIRS = ("fwd", "bwd")


@dataclass
class LSTMPConfig(RecurrentConfig):
    """:class:`RecurrentConfig` of an LSTM with ``proj_size`` (``0 < P < H``)."""

    proj_size: int = 1

    def __post_init__(self):
        super().__post_init__()
        if self.cell != "lstm":
            raise ConfigError(f"proj_size is for the LSTM only, got cell {self.cell!r}")
        P = self.proj_size
        if not isinstance(P, (int, np.integer)) or isinstance(P, bool) or \
                not 0 < P < self.hidden_size:
            raise ConfigError(f"proj_size must be an integer in 1..{self.hidden_size - 1} "
                              f"(below hidden_size), got {P!r}")
        if self.peephole:
            raise ConfigError("a projection LSTM has no peepholes")
        if self.init == "identity":
            raise ConfigError("init='identity' is for the vanilla RNN only")

    @classmethod
    def from_dict(cls, d: dict) -> LSTMPConfig:
        return config_from_dict(cls, d, "recurrent")


# -- the cell: pure functions -----------------------------------------------------------------
def _activate(a, H):
    """In place over (B, 4H) pre-activations: sigmoid on i, f, o, tanh on g."""
    sigmoid_(a[:, : 2 * H])
    np.tanh(a[:, 2 * H : 3 * H], out=a[:, 2 * H : 3 * H])
    sigmoid_(a[:, 3 * H :])


def forward(xp, state0, p, mask=None, full=None, *, grad=True):
    """Run over ``xp`` (T, B, 4H) = ``x W_x + b`` from ``state0 = (r0 (B, P), c0 (B, H))``.

    Returns ``(Rs (T+1, B, P), LSTMState(r_T, c_T), cache)``, the contract of
    :mod:`rnnkit.nn.cells` (``cache`` None with ``grad=False``); ``xp`` becomes the gate
    activations."""
    T, B, G = xp.shape
    H = G // 4
    W_h, W_hr = p["W_h"], p["W_hr"]
    P = W_hr.shape[1]
    dt = xp.dtype
    full = T if full is None else full
    Rs = np.empty((T + 1, B, P), dt)  # (T+1, B, P)
    Cs = np.empty((T + 1, B, H), dt)  # (T+1, B, H)
    TC = np.empty((T, B, H), dt)  # tanh(c_t)
    Ms = np.empty((T, B, H), dt)  # m_t = o tanh(c_t), before the projection
    Rs[0], Cs[0] = state0
    with blas_threads(1):
        for t in range(T):
            a = xp[t]
            a += Rs[t] @ W_h
            _activate(a, H)
            i, f, g, o = a[:, :H], a[:, H : 2 * H], a[:, 2 * H : 3 * H], a[:, 3 * H :]
            np.multiply(f, Cs[t], out=Cs[t + 1])
            Cs[t + 1] += i * g
            np.tanh(Cs[t + 1], out=TC[t])
            np.multiply(o, TC[t], out=Ms[t])
            np.matmul(Ms[t], W_hr, out=Rs[t + 1])
            if t >= full:
                inv = ~mask[t]
                np.copyto(Rs[t + 1], Rs[t], where=inv)
                np.copyto(Cs[t + 1], Cs[t], where=inv)
    cache = {"A": xp, "Rs": Rs, "Cs": Cs, "TC": TC, "Ms": Ms, "mask": mask, "full": full,
             "p": p}
    return Rs, LSTMState(Rs[-1], Cs[-1]), (cache if grad else None)


def backward(dHs, dstateT, cache, consume=False):
    """Backpropagate ``dHs`` (T, B, P) and ``dstateT``; returns ``(dA (T, B, 4H), dstate0,
    {"W_h", "W_hr"})``.  At a padded step the state's gradient passes through unchanged."""
    A, Rs, Cs, TC, Ms = cache["A"], cache["Rs"], cache["Cs"], cache["TC"], cache["Ms"]
    mask, full, p = cache["mask"], cache["full"], cache["p"]
    T, B, P = dHs.shape
    H = Cs.shape[-1]
    dt = Rs.dtype
    if dstateT is None:
        dr, dc = np.zeros((B, P), dt), np.zeros((B, H), dt)
    else:
        dr, dc = np.array(dstateT[0], dtype=dt), np.array(dstateT[1], dtype=dt)
    dA = np.empty_like(A)  # (T, B, 4H)
    GR = np.empty((T, B, P), dt)  # gr_t, the right operand of dW_hr
    W_hT, W_hrT = np.ascontiguousarray(p["W_h"].T), np.ascontiguousarray(p["W_hr"].T)
    with blas_threads(1):
        for t in range(T - 1, -1, -1):
            gr = GR[t]
            np.add(dr, dHs[t], out=gr)
            dm = gr @ W_hrT  # (B, H)
            a, da, tc = A[t], dA[t], TC[t]
            i, f, g, o = a[:, :H], a[:, H : 2 * H], a[:, 2 * H : 3 * H], a[:, 3 * H :]
            da[:, 3 * H :] = dm * tc * o * (1 - o)
            gc = dc + dm * o * (1 - tc * tc)
            da[:, :H] = gc * g * i * (1 - i)
            da[:, H : 2 * H] = gc * Cs[t] * f * (1 - f)
            da[:, 2 * H : 3 * H] = gc * i * (1 - g * g)
            dc_prev = gc * f
            dr_prev = da @ W_hT  # (B, P)
            if t >= full:
                m = mask[t]
                da *= m
                dr_prev = np.where(m, dr_prev, gr)
                gr *= m
                dc_prev = np.where(m, dc_prev, dc)
            dr, dc = dr_prev, dc_prev
    dparams = {"W_h": Rs[:-1].reshape(T * B, P).T @ dA.reshape(T * B, 4 * H),
               "W_hr": Ms.reshape(T * B, H).T @ GR.reshape(T * B, P)}
    return dA, LSTMState(dr, dc), dparams


def step(xp_t, state, p):
    """One step for generation: ``xp_t`` (B, 4H) = ``x W_x + b``; returns ``LSTMState(r, c)``."""
    r, c = state
    H = c.shape[-1]
    a = r @ p["W_h"]
    a += xp_t
    _activate(a, H)
    c = a[:, H : 2 * H] * c + a[:, :H] * a[:, 2 * H : 3 * H]
    return LSTMState((a[:, 3 * H :] * np.tanh(c)) @ p["W_hr"], c)


# -- the layer --------------------------------------------------------------------------------
class ProjDirection(Module):
    """One layer and direction: ``W_x`` (D, 4H), ``W_h`` (P, 4H), ``b`` (4H,), ``W_hr`` (H, P)."""

    def __init__(self, cfg: LSTMPConfig, input_size: int, rng: np.random.Generator):
        super().__init__()
        H, P, D, dt = cfg.hidden_size, cfg.proj_size, input_size, np.dtype(cfg.dtype)
        if cfg.init in ("uniform", "pytorch"):
            a = (0.1 if cfg.init_scale is None else cfg.init_scale) if cfg.init == "uniform" \
                else 1.0 / np.sqrt(H)
            W_x = initializers.uniform(rng, (D, 4 * H), a, dt)
            W_h = initializers.uniform(rng, (P, 4 * H), a, dt)
            b = initializers.uniform(rng, (4 * H,), a, dt)
            W_hr = initializers.uniform(rng, (H, P), a, dt)
        else:
            W_x = np.concatenate([initializers.xavier_uniform(rng, D, H, dt) for _ in range(4)], 1)
            W_h = np.concatenate([initializers.xavier_uniform(rng, P, H, dt) for _ in range(4)], 1)
            b = np.zeros(4 * H, dt)
            b[gate_slice("lstm", "f", H)] = cfg.forget_bias
            W_hr = initializers.xavier_uniform(rng, H, P, dt)
        self.add_param("W_x", W_x)
        self.add_param("W_h", W_h)
        self.add_param("b", b)
        self.add_param("W_hr", W_hr)


class LSTMP(LSTM):
    """Stacked, optionally bidirectional projection LSTM; the API of :class:`LSTM` (forward,
    backward, step, lengths, dropout between layers), with ``proj_size`` ``P``."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, *,
                 proj_size: int, bidirectional: bool = False, dropout: float = 0.0,
                 dtype="float32", rng=None, **options):
        Module.__init__(self)
        self.cfg = LSTMPConfig(
            cell="lstm", input_size=input_size, hidden_size=hidden_size, num_layers=num_layers,
            bidirectional=bidirectional, dropout=dropout, dtype=np.dtype(dtype).name,
            proj_size=proj_size, **options)
        rng = initializers.as_rng(rng)
        self.dropout_rng = rng
        self.dirs: list[list[ProjDirection]] = []
        for layer in range(num_layers):
            D = input_size if layer == 0 else proj_size * self.cfg.dirs
            self.dirs.append([self.add_module(f"layers.{layer}.{_DIRS[d]}",
                                              ProjDirection(self.cfg, D, rng))
                              for d in range(self.cfg.dirs)])

    @classmethod
    def from_config(cls, cfg: LSTMPConfig | dict, rng=None) -> LSTMP:
        cfg = cfg if isinstance(cfg, LSTMPConfig) else LSTMPConfig.from_dict(cfg)
        return cls(cfg.input_size, cfg.hidden_size, cfg.num_layers, proj_size=cfg.proj_size,
                   bidirectional=cfg.bidirectional, dropout=cfg.dropout, dtype=cfg.dtype,
                   rng=rng, init=cfg.init, init_scale=cfg.init_scale,
                   forget_bias=cfg.forget_bias, weight_drop=cfg.weight_drop, locked=cfg.locked)

    @property
    def proj_size(self) -> int:
        return self.cfg.proj_size

    @property
    def output_size(self) -> int:
        return self.cfg.proj_size * self.cfg.dirs

    def initial_state(self, B: int) -> LSTMState:
        S = self.cfg.num_layers * self.cfg.dirs
        return LSTMState(np.zeros((S, B, self.cfg.proj_size), self.np_dtype),
                         np.zeros((S, B, self.cfg.hidden_size), self.np_dtype))

    def _check_state(self, state, B: int, finite: bool = True) -> LSTMState:
        name = type(self).__name__
        S = self.cfg.num_layers * self.cfg.dirs
        if not (isinstance(state, tuple) and len(state) == 2):
            raise ValueError(f"{name}: expected the state as a tuple (h, c), got "
                             f"{type(state).__name__}")
        h = check_array(name, "h0", state[0], (S, B, self.cfg.proj_size), finite=finite)
        c = check_array(name, "c0", state[1], (S, B, self.cfg.hidden_size), finite=finite)
        return LSTMState(h.astype(self.np_dtype, copy=False), c.astype(self.np_dtype, copy=False))

    def _cell(self, dtype):
        return sys.modules[__name__]  # this module's forward, backward and step
