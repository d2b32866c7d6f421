"""Gate saturation: how often gate activations sit near their limits, per gate and layer.

A sigmoid gate is *saturated* when its value is below ``low`` (0.1) or above ``high`` (0.9):
there its derivative ``s (1 - s) < 0.09`` and little gradient passes.  Tanh-valued blocks (the
LSTM candidate ``g``, the GRU candidate ``n``, the vanilla RNN's ``h``) are mapped to [0, 1] by
``(v + 1) / 2`` first, so the same thresholds mean ``|v| > 0.8``.  For a ReLU RNN, ``low`` counts
the units at exactly 0 ("dead") and ``high`` is 0.  Padded steps are left out.

The figures come from the forward caches (``A`` holds the gate activations, see
``rnnkit/cells/*.py``), so any model works: :class:`GateMonitor` watches every recurrent layer
inside a model while it runs, e.g. during training.

>>> from rnnkit.nn.recurrent import LSTM
>>> lstm = LSTM(3, 4, rng=0)
>>> with GateMonitor(lstm) as mon:
...     _ = lstm.forward(np.zeros((2, 5, 3)))
>>> [s.gate for s in mon.stats()], round(mon.stats()[1].mean, 4)   # f = sigmoid(1)
(['i', 'f', 'g', 'o'], 0.7311)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..nn.cells.activations import GATES, SIGMOID_GATES, gate_slice

if TYPE_CHECKING:
    from typing_extensions import Self


@dataclass
class GateStats:
    """Saturation of one gate block over a batch."""

    module: str
    layer: int
    direction: str
    gate: str
    activation: str  # "sigmoid" | "tanh" | "relu"
    low: float  # fraction below the low threshold (relu: exactly 0)
    high: float  # fraction above the high threshold
    mean: float  # mean activation
    count: int  # number of values counted (steps x rows x units)

    @property
    def name(self) -> str:
        return f"{self.module}.layers.{self.layer}.{self.direction}.{self.gate}"

    @property
    def saturated(self) -> float:
        return self.low + self.high


def _blocks(layer, cache):
    """(gate, activation, values (T, B, H)) of one direction's forward cache."""
    cell, H = layer.cell, layer.cfg.hidden_size
    if "steps" in cache:  # run one step at a time (a backward hook is also watching)
        parts = [_blocks(layer, c) for c in cache["steps"]]
        return [(g, act, np.concatenate([p[i][2] for p in parts]))
                for i, (g, act, _) in enumerate(parts[0])]
    if cell == "rnn":
        return [("h", "relu" if cache["relu"] else "tanh", cache["Hs"][1:])]
    if cell not in GATES:  # minGRU / minLSTM: no gate activations are kept
        return []
    A = cache["A"]
    return [(g, "sigmoid" if g in SIGMOID_GATES[cell] else "tanh", A[..., gate_slice(cell, g, H)])
            for g in GATES[cell]]


def _counts(values, activation, mask, low, high):
    """(n_low, n_high, sum, n) over real steps."""
    v = values.astype(np.float64, copy=False)
    if activation == "relu":
        lo, hi = v == 0, np.zeros(v.shape, bool)
    else:
        u = (v + 1) * 0.5 if activation == "tanh" else v
        lo, hi = u < low, u > high
    if mask is None:
        return int(lo.sum()), int(hi.sum()), float(v.sum()), v.size
    w = np.broadcast_to(mask, v.shape)
    return int((lo & w).sum()), int((hi & w).sum()), float(v[w].sum()), int(w.sum())


class _ForwardHook:
    """A forward hook (:meth:`rnnkit.nn.recurrent.Recurrent.add_hook`) handing every forward
    cache of one layer to ``add(name, layer, cache)``."""

    def __init__(self, name: str, add) -> None:
        self.name, self.add = name, add

    def forward(self, layer, cache) -> None:
        self.add(self.name, layer, cache)


class GateMonitor:
    """Accumulates gate saturation over every forward pass of the recurrent layers inside
    ``model`` while the ``with`` block is open (a forward hook on each layer, removed on
    exit; :meth:`rnnkit.nn.recurrent.Recurrent.add_hook`).  Results do not change; the cost is
    a few comparisons per activation.  With ``enabled=False`` it does nothing, so a trainer
    can write::

        with GateMonitor(model, enabled=step % every == 0) as gates:
            loss, n = task.train_batch(i, rng)
        if gates.enabled:
            log.log("gates", step=step, **gates.record())
    """

    def __init__(self, model, *, low: float = 0.1, high: float = 0.9, enabled: bool = True):
        from .models import recurrent_layers

        self.enabled = bool(enabled)
        self.low, self.high = low, high
        self.layers = recurrent_layers(model) if self.enabled else []
        self._acc: dict[tuple, list] = {}

    def __enter__(self) -> Self:
        self._handles = [layer.add_hook(_ForwardHook(name, self.add))
                         for name, layer in self.layers]
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def add(self, name: str, layer, cache) -> None:
        """Count the activations in a forward ``cache`` of ``layer``."""
        mask = cache["mask"]
        for li, lc in enumerate(cache["layers"]):
            for d, dc in enumerate(lc["dirs"]):
                m = mask
                if m is not None and d == 1:
                    m = m[cache["gather"]]  # the backward direction's processing order
                for gate, act, values in _blocks(layer, dc):
                    key = (name, li, ("fwd", "bwd")[d], gate, act)
                    acc = self._acc.setdefault(key, [0, 0, 0.0, 0])
                    for k, v in enumerate(_counts(values, act, m, self.low, self.high)):
                        acc[k] += v

    def stats(self) -> list[GateStats]:
        return [GateStats(*key, low=a[0] / max(a[3], 1), high=a[1] / max(a[3], 1),
                          mean=a[2] / max(a[3], 1), count=a[3])
                for key, a in self._acc.items()]

    def record(self, prefix: str = "gates/") -> dict[str, float]:
        """Flat ``{name: value}`` for the metrics log, e.g. ``"gates/rnn.layers.0.fwd.f.saturated"``
        (also ``.low``, ``.high``, ``.mean``)."""
        rec = {}
        for s in self.stats():
            for k in ("saturated", "low", "high", "mean"):
                rec[f"{prefix}{s.name}.{k}"] = getattr(s, k)
        return rec


def gate_saturation(model, batch=None, *, forward=None, low: float = 0.1,
                    high: float = 0.9, B: int = 8, T: int = 50,
                    rng: np.random.Generator | None = None) -> list[GateStats]:
    """Gate saturation of every recurrent layer inside ``model`` on ``batch``.

    With a ``batch`` of token ids (B, T) the whole model runs, through ``forward(model, batch)``
    (the task's, as :func:`rnnkit.tasks.load_model` gives it; default ``model.forward(batch)``);
    otherwise each recurrent layer is probed alone on random N(0, 1)
    inputs of shape (B, T, D) drawn from ``rng``.  ``model`` may also be a bare layer, with
    ``batch`` its input (B, T, D).
    """
    from ..nn.recurrent import Recurrent
    from .models import probe_inputs, recurrent_layers

    rng = np.random.default_rng(0) if rng is None else rng
    was_training = model.training
    model.eval()
    try:
        with GateMonitor(model, low=low, high=high) as mon:
            if isinstance(model, Recurrent):
                x = probe_inputs(model, B, T, rng) if batch is None else batch
                model.forward(x)
            elif batch is not None:
                (forward or _plain_forward)(model, batch)
            else:
                for _, layer in recurrent_layers(model):
                    layer.forward(probe_inputs(layer, B, T, rng))
    finally:
        model.train(was_training)
    return mon.stats()


def _plain_forward(model, batch) -> None:
    model.forward(batch)


def format_gates(stats: list[GateStats]) -> str:
    """A text table: one row per gate block."""
    width = max([len("gate")] + [len(s.name) for s in stats])
    header = (f"{'gate':<{width}}  {'act':>7}  {'saturated':>9}  {'low':>6}  {'high':>6}  "
              f"{'mean':>7}")
    lines = [header]
    for s in stats:
        lines.append(f"{s.name:<{width}}  {s.activation:>7}  {s.saturated:>9.1%}  "
                     f"{s.low:>6.1%}  {s.high:>6.1%}  {s.mean:>7.3f}")
    return "\n".join(lines)
