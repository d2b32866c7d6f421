"""Gradient flow through time: ``||dL/dh_t||`` (and ``||dL/dc_t||`` for the LSTM) at every step.

``L`` is the loss at the last step (``loss="last"``) or the sum over all steps (``"sum"``).  The
figures are exact and come from the layer's own backward pass: a backward hook
(:meth:`rnnkit.nn.recurrent.Recurrent.add_hook`) makes the layer run its cells one step at a
time and report the gradient passed between steps::

    for t in reversed(range(T)):
        g_t = dh + dout_t              # dL/dh_t: from the step above and from the output at t
        record(g_t)                    # (and dc_t, the gradient along the LSTM's cell state)
        dxp_t, dh = cell.backward(dout_t, dh, cache_t)     # the cell's backward, one step

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
from ..nn.recurrent import Recurrent


@dataclass
class GradientFlow:
    """Norms of the gradient reaching each state, in input time order.

    ``h[l, d, t] = ||dL/dh_t||`` for layer ``l`` and direction ``d`` (Frobenius norm over the
    batch and the units); ``c[l, d, t] = ||dL/dc_t||`` for the LSTM (``None`` otherwise), the
    gradient that step ``t + 1`` passes back along the cell state (so 0 at the last step for
    a loss there).
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


# -- recording through the layers' backward hooks ---------------------------------------------


class _Recorder:
    """A backward hook (:meth:`Recurrent.add_hook`) keeping ``(name, records)`` per pass."""

    def __init__(self, name: str, found: list) -> None:
        self.name, self.found = name, found

    def backward(self, layer, records) -> None:
        self.found.append((self.name, records))


@contextmanager
def recording(model):
    """Inside the block, every backward pass of a recurrent layer inside ``model`` (any model,
    any kind) appends ``(name, records)`` to the yielded list: the records that
    :meth:`rnnkit.nn.recurrent.Recurrent.add_hook` describes, from the layer's own backward
    pass.  Nothing is patched; the hooks are removed on exit.  The layers run their cells one
    step at a time inside the block."""
    from .models import recurrent_layers

    found: list = []
    handles = [layer.add_hook(_Recorder(name, found)) for name, layer in recurrent_layers(model)]
    try:
        yield found
    finally:
        for h in handles:
            h.remove()


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
    saved = {k: g.copy() for k, g in layer.grads().items()}
    try:
        with recording(layer) as found:
            out, _, cache = layer.forward(x, state, lengths, rng=rng)
            B, T, W = out.shape
            if upstream is None:
                upstream = _upstream(loss, B, T, W, lengths, rng, out.dtype)
            else:
                upstream = check_array(type(layer).__name__, "upstream", upstream, (B, T, W))
                loss = "given"
            layer.backward(upstream, cache)
    finally:
        for k, g in layer.grads().items():
            g[...] = saved[k]
    return flow_from_records(found[0][1], name or layer.cell, layer.cell, loss)


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
