"""Gradient flow through time: ``||dL/dh_t||`` (and ``||dL/dc_t||`` for the LSTM) at every step.

``L`` is the loss at the last step (``loss="last"``) or the sum over all steps (``"sum"``).  The
figures are exact: the backward pass of each cell is run again step by step, keeping the *total*
gradient that reaches each state -- the same equations as ``rnnkit/cells/*.py`` (derivations in
``docs/derivations.md``), written as a plain loop that records ``dh`` (and ``dc``) per step::

    for t in reversed(range(T)):
        g_t = dh + dout_t              # dL/dh_t: from the step above and from the output at t
        record(g_t)
        dxp_t, dh = cell_backward_step(g_t, cache_t)

For a vanilla tanh RNN ``dL/dh_{t-1} = (dL/dh_t * (1 - h_t^2)) W_h^T``: the product of T such
Jacobians shrinks (or grows) geometrically -- the vanishing/exploding gradient of Bengio et al.
(1994).  The LSTM's cell path multiplies by the forget gate only, so it decays far slower.

>>> from rnnkit.nn.recurrent import LSTM
>>> lstm = LSTM(3, 4, num_layers=2, dtype="float64", rng=0)
>>> x = np.random.default_rng(0).standard_normal((2, 6, 3))
>>> flow = gradient_flow(lstm, x, rng=np.random.default_rng(1))
>>> flow.h.shape, flow.c.shape          # (L, dirs, T)
((2, 1, 6), (2, 1, 6))
>>> bool(flow.h[1, 0, -1] > 0)          # ||dL/dh_T|| = ||dL/dout_T||, a unit vector here
True
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from ..checks import check_array
from ..errors import ConfigError
from ..nn.cells.lstm import LSTMState
from ..nn.recurrent import Recurrent


@dataclass
class GradientFlow:
    """Norms of the gradient reaching each state, in input time order.

    ``h[l, d, t] = ||dL/dh_t||`` for layer ``l`` and direction ``d`` (Frobenius norm over the
    batch and the units), ``c`` the same for the LSTM cell state (``None`` otherwise).
    """

    name: str
    cell: str
    h: np.ndarray  # (L, dirs, T)
    c: np.ndarray | None  # (L, dirs, T), LSTM only
    loss: str

    def decay(self, layer: int = 0) -> float:
        """``||dL/dh_1|| / ||dL/dh_T||`` of the forward direction of ``layer``."""
        curve = self.h[layer, 0]
        return float(curve[0] / curve[-1]) if curve[-1] > 0 else float("nan")

    def curves(self, label: str | None = None) -> dict[str, np.ndarray]:
        """Named 1-D curves for :func:`rnnkit.train.plotting.plot_curves`."""
        label = label or self.name
        L, dirs, _ = self.h.shape
        out = {}
        for layer in range(L):
            for d in range(dirs):
                tag = label + (f" layer {layer}" if L > 1 else "") + (
                    " (backward)" if d == 1 else "")
                out[f"{tag} h"] = self.h[layer, d]
                if self.c is not None:
                    out[f"{tag} c"] = self.c[layer, d]
        return out


# -- recording backward of one cell, over one direction -----------------------------------------
# Each returns (dxp (T, B, G*H), state gradient at t = 0, {"h": (T, B, H)[, "c": ...]}), in
# processing order, and never writes into the cache.


def _rnn_record(dHs, dhT, cache):
    Hs, mask, W_h = cache["Hs"], cache["mask"], cache["W_h"]
    T, B, H = dHs.shape
    hs = Hs[1:]
    D = (hs > 0).astype(Hs.dtype) if cache["relu"] else 1 - hs * hs  # phi'(a_t) (T, B, H)
    if mask is not None:
        D = D * mask
    W_hT = W_h.T
    dh = np.zeros((B, H), Hs.dtype) if dhT is None else np.array(dhT, dtype=Hs.dtype)
    DH = np.empty((T, B, H), Hs.dtype)
    dxp = np.empty((T, B, H), Hs.dtype)
    for t in range(T - 1, -1, -1):
        g = dh + dHs[t]
        DH[t] = g
        da = np.multiply(g, D[t], out=dxp[t])
        dh = da @ W_hT
        if mask is not None:
            dh = np.where(mask[t], dh, g)  # padded step: the state was carried unchanged
    return dxp, dh, {"h": DH}


def _gru_record(dHs, dhT, cache):
    A, Hs, mask, W_h = cache["A"], cache["Hs"], cache["mask"], cache["W_h"]
    T, B, H = dHs.shape
    dt = Hs.dtype
    R, Z, N = A[..., :H], A[..., H : 2 * H], A[..., 2 * H :]
    Hprev = Hs[:-1]
    Dn = (1 - Z) * (1 - N * N)  # da_n / g
    Dz = (Hprev - N) * Z * (1 - Z)  # da_z / g
    after = cache["after"]
    if after:
        Dr = Dn * cache["HN"] * R * (1 - R)  # da_r / g
        Dhn = Dn * R  # d(h W_hn + b_hn) / g
    else:
        Drh = Hprev * R * (1 - R)
        W_hnT, W_hrzT = W_h[:, 2 * H :].T, W_h[:, : 2 * H].T
    W_hT = W_h.T
    dh = np.zeros((B, H), dt) if dhT is None else np.array(dhT, dtype=dt)
    DH = np.empty((T, B, H), dt)
    dxp = np.empty((T, B, 3 * H), dt)
    for t in range(T - 1, -1, -1):
        g = dh + dHs[t]
        DH[t] = g
        d = dxp[t]
        np.multiply(g, Dz[t], out=d[:, H : 2 * H])
        np.multiply(g, Dn[t], out=d[:, 2 * H :])
        if after:
            np.multiply(g, Dr[t], out=d[:, :H])
            back = np.concatenate([d[:, :H], d[:, H : 2 * H], g * Dhn[t]], axis=1) @ W_hT
        else:
            drh = d[:, 2 * H :] @ W_hnT  # d(r * h_{t-1})
            np.multiply(drh, Drh[t], out=d[:, :H])
            back = d[:, : 2 * H] @ W_hrzT + drh * R[t]
        back += g * Z[t]
        if mask is not None:
            d *= mask[t]
            back = np.where(mask[t], back, g)
        dh = back
    return dxp, dh, {"h": DH}


def _lstm_record(dHs, dstateT, cache):
    A, Hs, Cs, TC, mask, p = (cache[k] for k in ("A", "Hs", "Cs", "TC", "mask", "p"))
    T, B, H = dHs.shape
    dt = Hs.dtype
    I, F, G, O = (A[..., k * H : (k + 1) * H] for k in range(4))
    Cprev = Cs[:-1]
    Q = O * (1 - TC * TC)  # dc_t / dh_t along h_t = o tanh(c_t)
    peep = "p_i" in p
    W_hT = p["W_h"].T
    if dstateT is None:
        dh, dc = np.zeros((B, H), dt), np.zeros((B, H), dt)
    else:
        dh, dc = np.array(dstateT[0], dtype=dt), np.array(dstateT[1], dtype=dt)
    DH = np.empty((T, B, H), dt)
    DC = np.empty((T, B, H), dt)
    dxp = np.empty((T, B, 4 * H), dt)
    for t in range(T - 1, -1, -1):
        m = None if mask is None else mask[t]
        gh = dh + dHs[t]
        DH[t] = gh
        da = dxp[t]
        da_i, da_f, da_g, da_o = (da[:, k * H : (k + 1) * H] for k in range(4))
        np.multiply(gh * TC[t], O[t] * (1 - O[t]), out=da_o)
        step = gh * Q[t]
        if peep:
            step += da_o * p["p_o"]
        if m is not None:
            step *= m
            da_o *= m
        gc = dc + step
        DC[t] = gc
        np.multiply(gc * G[t], I[t] * (1 - I[t]), out=da_i)
        np.multiply(gc * Cprev[t], F[t] * (1 - F[t]), out=da_f)
        np.multiply(gc * I[t], 1 - G[t] * G[t], out=da_g)
        if m is not None:
            da[:, : 3 * H] *= m
        dc = gc * F[t]
        if peep:
            dc += da_i * p["p_i"] + da_f * p["p_f"]
        dh = da @ W_hT
        if m is not None:
            dh = np.where(m, dh, gh)
            dc = np.where(m, dc, gc)
    return dxp, LSTMState(dh, dc), {"h": DH, "c": DC}


_RECORDERS = {"rnn": _rnn_record, "gru": _gru_record, "lstm": _lstm_record}


# -- the stack driver ---------------------------------------------------------------------------


def record_backward(layer: Recurrent, dout, cache, dstate=None):
    """Backpropagate like ``layer.backward`` but without parameter gradients, recording the
    gradient reaching every state.

    Returns ``(dx, dstate0, records)``: ``dx`` and ``dstate0`` equal those of
    :meth:`Recurrent.backward`; ``records[l][d]`` is ``{"h": (T, B, H)[, "c": (T, B, H)]}`` in
    input time order (the total gradient ``dL/dh_t`` of layer ``l``, direction ``d``).
    """
    cfg = layer.cfg
    name = type(layer).__name__
    B, T, H = cache["B"], cache["T"], cfg.hidden_size
    dout = check_array(name, "dout", dout, (B, T, layer.output_size))
    dout = np.array(dout.transpose(1, 0, 2), dtype=layer.np_dtype, order="C")  # (T, B, dirs*H)
    mask, gather = cache["mask"], cache["gather"]
    lstm = cfg.cell == "lstm"
    records = [[None] * cfg.dirs for _ in range(cfg.num_layers)]
    dstate0 = [None] * (cfg.num_layers * cfg.dirs)

    def flip(a):  # processing order <-> time order of the backward direction (an involution)
        return a[::-1] if gather is None else a[gather]

    for li in range(cfg.num_layers - 1, -1, -1):
        lc = cache["layers"][li]
        if mask is not None:
            dout *= mask
        dinp = None
        for d in range(cfg.dirs):
            k = li * cfg.dirs + d
            dT = None
            if dstate is not None:
                dT = (dstate[0][k], dstate[1][k]) if lstm else dstate[k]
            dhs = dout[..., d * H : (d + 1) * H]
            if d == 1:
                dhs = flip(dhs)
            dxp, ds0, rec = _RECORDERS[cfg.cell](dhs, dT, lc["dirs"][d])
            dstate0[k] = ds0
            if d == 1:
                dxp = flip(dxp)
                rec = {key: flip(v) for key, v in rec.items()}
            records[li][d] = rec
            W_x = layer.dirs[li][d].param["W_x"]
            dx = np.ascontiguousarray(dxp).reshape(T * B, -1) @ W_x.T  # (T*B, D)
            dinp = dx if dinp is None else dinp + dx
        dout = dinp.reshape(T, B, -1)
        if lc["drop"] is not None:
            dout *= lc["drop"]
    dx = dout.transpose(1, 0, 2)  # (B, T, D)
    if lstm:
        ds = LSTMState(np.stack([s[0] for s in dstate0]), np.stack([s[1] for s in dstate0]))
    else:
        ds = np.stack(dstate0)
    return dx, ds, records


def flow_from_records(records, name: str, cell: str, loss: str) -> GradientFlow:
    """Norms over batch and units of the recorded gradients -> :class:`GradientFlow`."""

    def norms(key):
        return np.array([[np.sqrt(np.einsum("tbh,tbh->t", r[key], r[key])) for r in row]
                         for row in records])  # (L, dirs, T)

    return GradientFlow(name, cell, norms("h"), norms("c") if cell == "lstm" else None, loss)


# -- public entry points ------------------------------------------------------------------------


def _upstream(loss: str, B: int, T: int, width: int, lengths, rng, dtype) -> np.ndarray:
    dout = np.zeros((B, T, width), dtype)  # (B, T, dirs*H)
    rows = np.arange(B)
    last = np.full(B, T - 1) if lengths is None else np.asarray(lengths) - 1
    if loss == "last":
        u = rng.standard_normal((B, width))
        dout[rows, last] = u / np.linalg.norm(u)
    elif loss == "sum":
        u = rng.standard_normal((B, T, width))
        if lengths is not None:
            u *= (np.arange(T)[None, :] <= last[:, None])[..., None]
        dout[...] = u / np.linalg.norm(u[rows, last])
    else:
        raise ConfigError(f"loss must be 'last' or 'sum', got {loss!r}")
    return dout


def gradient_flow(layer: Recurrent, x, state=None, *, lengths=None, loss: str = "last",
                  upstream=None, rng: np.random.Generator | None = None,
                  name: str | None = None) -> GradientFlow:
    """Gradient norms through time for a sequence layer on the batch ``x`` (B, T, D).

    ``L = <u, out_T>``: the upstream gradient is a random unit-norm ``u`` at the last (real) step
    of every row (``loss="last"``), or a random ``u_t`` at every step (``"sum"``, scaled so the
    last step's has unit norm); or pass ``upstream`` (B, T, dirs*H), e.g. the gradient of a
    readout's loss.  ``rng`` draws ``u`` (and any dropout between layers, when training).
    """
    rng = np.random.default_rng(0) if rng is None else rng
    out, _, cache = layer.forward(x, state, lengths, rng=rng)
    B, T, W = out.shape
    if upstream is None:
        upstream = _upstream(loss, B, T, W, lengths, rng, out.dtype)
    else:
        loss = "given"
    _, _, records = record_backward(layer, upstream, cache)
    return flow_from_records(records, name or layer.cell, layer.cell, loss)


@contextmanager
def recording(model):
    """Inside the block, every call of a recurrent layer's ``backward`` (any model, any kind)
    runs :func:`record_backward` instead and appends ``(name, records)`` to the yielded list.
    Parameter gradients of the recurrent layers are not accumulated inside the block."""
    from .models import recurrent_layers

    found: list = []
    layers = recurrent_layers(model)
    for name, layer in layers:
        def backward(dout, cache, dstate=None, _layer=layer, _name=name):
            dx, ds, records = record_backward(_layer, dout, cache, dstate)
            found.append((_name, records))
            return dx, ds

        layer.backward = backward  # instance attribute: shadows the method
    try:
        yield found
    finally:
        for _, layer in layers:
            layer.__dict__.pop("backward", None)


def model_gradient_flow(model, batch, loss_fn, *, loss: str = "last") -> dict[str, GradientFlow]:
    """Gradient flow of every recurrent layer of ``model`` for its own loss on ``batch``.

    ``loss_fn(model, batch, loss)`` runs the forward and backward pass of the task's loss (the
    ``loss`` of :func:`rnnkit.tasks.load_model`; a language model takes
    ``batch = (ids, targets)``).  Parameter gradients are left as they were.  Returns
    ``{module name: GradientFlow}``.
    """
    from .models import recurrent_layers

    saved = {k: g.copy() for k, g in model.grads().items()}
    was_training = model.training
    model.eval()
    try:
        with recording(model) as found:
            loss_fn(model, batch, loss)
    finally:
        model.train(was_training)
        for k, g in model.grads().items():
            g[...] = saved[k]
    cells = {n: lay.cell for n, lay in recurrent_layers(model)}
    return {name: flow_from_records(rec, name, cells[name], loss) for name, rec in found}


# -- the comparison of cells on one long-range task ---------------------------------------------


def memory_task(B: int, T: int, V: int, rng: np.random.Generator):
    """A batch of the "remember the first symbol" task: one-hot inputs ``x`` (B, T, V) of random
    symbols; the target ``y`` (B,) is the symbol at step 0, to be named at step T."""
    sym = rng.integers(0, V, size=(B, T))
    x = np.zeros((B, T, V))
    x[np.arange(B)[:, None], np.arange(T)[None, :], sym] = 1.0
    return x, sym[:, 0]


def readout_upstream(out_last: np.ndarray, W_o: np.ndarray, y: np.ndarray) -> np.ndarray:
    """dL/dout_T of ``L = mean_b CE(softmax(out_T W_o), y)``:
    ``(softmax - onehot(y)) W_o^T / B``."""
    logits = out_last @ W_o  # (B, V)
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(len(y)), y] -= 1.0
    return p @ W_o.T / len(y)


def compare_cells(cells=("rnn", "gru", "lstm"), *, hidden_size: int = 64, vocab: int = 8,
                  length: int = 100, batch: int = 16, num_layers: int = 1, seed: int = 0,
                  loss: str = "last", **options) -> dict[str, GradientFlow]:
    """Gradient flow of fresh layers of the same size on the same batch of :func:`memory_task`,
    in float64, keyed by label.  ``L`` is the cross-entropy of a fixed random linear readout of
    ``h_T`` (``loss="last"``), or ``"sum"`` as in :func:`gradient_flow`.

    ``cells`` holds cell names or ``(label, cell, options)`` triples (e.g.
    ``("lstm, forget bias 3", "lstm", {"forget_bias": 3.0})``); ``options`` go to every layer
    that takes them (``init``, ``forget_bias``, ``nonlinearity``, ...).

    >>> flows = compare_cells(("rnn", "lstm"), hidden_size=8, length=30, batch=2)
    >>> sorted(flows), flows["rnn"].h.shape
    (['lstm', 'rnn'], (1, 1, 30))
    """
    from ..nn.recurrent import make_recurrent

    x, y = memory_task(batch, length, vocab, np.random.default_rng(seed))
    W_o = np.random.default_rng(seed + 1).standard_normal((hidden_size, vocab)) / np.sqrt(
        hidden_size)
    out = {}
    for spec in cells:
        label, cell, extra = (spec, spec, {}) if isinstance(spec, str) else spec
        opts = {k: v for k, v in {**options, **extra}.items() if _takes(cell, k)}
        layer = make_recurrent(cell, vocab, hidden_size, num_layers, dtype="float64",
                               rng=np.random.default_rng(seed + 2), **opts)
        if loss == "last":
            o, _, _ = layer.forward(x)
            up = np.zeros_like(o)
            up[:, -1] = readout_upstream(o[:, -1], W_o, y)
            flow = gradient_flow(layer, x, upstream=up, name=label)
            flow.loss = "last"
        else:
            flow = gradient_flow(layer, x, loss=loss, rng=np.random.default_rng(seed + 3),
                                 name=label)
        out[label] = flow
    return out


def _takes(cell: str, option: str) -> bool:
    only = {"nonlinearity": "rnn", "reset_after": "gru", "peephole": "lstm",
            "forget_bias": "lstm"}
    return only.get(option, cell) == cell


def format_table(flows: dict[str, GradientFlow], every: int | None = None) -> str:
    """A text table: one row per step (every ``every`` steps), one column per curve."""
    curves = {}
    for label, f in flows.items():
        curves.update(f.curves(label))
    T = len(next(iter(curves.values())))
    every = every or max(1, T // 20)
    steps = sorted(set(range(0, T, every)) | {T - 1})
    names = list(curves)
    width = max(10, *(len(n) for n in names))
    lines = ["step  " + "  ".join(f"{n:>{width}}" for n in names)]
    for t in steps:
        lines.append(f"{t + 1:>4}  " + "  ".join(f"{curves[n][t]:>{width}.3e}" for n in names))
    return "\n".join(lines)
