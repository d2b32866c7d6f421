"""Run an rnnkit sequence layer and its PyTorch twin on the same data; compare everything.

``assert_matches_torch(layer, x, state, lengths, dout, dstate)`` runs forward and backward on
both sides and checks the outputs, the final state (h and c), and the gradients w.r.t. the
input, the initial state and every weight, with ``max |a - b| <= 1e-10`` in float64 and
``1e-5`` in float32.  The PyTorch side feeds variable lengths through
``pack_padded_sequence(..., enforce_sorted=False)`` and ``pad_packed_sequence``.

Import it only from test modules that have already done ``pytest.importorskip("torch")``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from rnnkit.interop import to_torch, torch_grads_to_rnnkit
from rnnkit.nn.cells.lstm import LSTMState
from rnnkit.nn.recurrent import Recurrent

ATOL = {np.dtype(np.float64): 1e-10, np.dtype(np.float32): 1e-5}


@dataclass
class Run:
    """Everything one forward and backward pass produces, as NumPy arrays."""

    out: np.ndarray  # (B, T, dirs*H)
    h: np.ndarray  # (L*dirs, B, H) final state
    c: np.ndarray | None  # LSTM only
    dx: np.ndarray  # (B, T, D)
    dh0: np.ndarray  # (L*dirs, B, H)
    dc0: np.ndarray | None
    grads: dict[str, np.ndarray]  # rnnkit names


def random_case(layer: Recurrent, rng: np.random.Generator, B: int, T: int, scale=1.0):
    """A random input, initial state and upstream gradients for the outputs and final state."""
    dt = layer.np_dtype
    D = layer.cfg.input_size

    def rand(*shape):
        return (scale * rng.standard_normal(shape)).astype(dt)

    def rand_state():  # the shapes of the layer's own state (h and c differ for LSTMP)
        zero = layer.initial_state(B)
        return LSTMState(*(rand(*s.shape) for s in zero)) if layer.cell == "lstm" else \
            rand(*zero.shape)

    x, dout = rand(B, T, D), rand(B, T, layer.output_size)
    return x, rand_state(), dout, rand_state()


def run_rnnkit(layer: Recurrent, x, state, lengths, dout, dstate) -> Run:
    """Forward and backward through ``layer`` (its gradients are zeroed first)."""
    layer.zero_grad()
    out, final, cache = layer.forward(x, state, lengths)
    dx, dstate0 = layer.backward(dout, cache, dstate)
    grads = {k: v.copy() for k, v in layer.grads().items()}
    if layer.cell == "lstm":
        return Run(out, final.h, final.c, dx, dstate0.h, dstate0.c, grads)
    return Run(out, final, None, dx, dstate0, None, grads)


def run_torch(layer: Recurrent, x, state, lengths, dout, dstate, module=None) -> Run:
    """The same pass through ``module`` (default ``to_torch(layer)``), with autograd; the
    weight gradients come back under rnnkit's names."""
    if module is None:
        if layer.training and layer.cfg.dropout > 0:
            raise ValueError("run_torch: the dropout masks of the two sides differ; use eval()")
        module = to_torch(layer)
    B, T, _ = np.shape(x)
    lstm = layer.cell == "lstm"
    if state is None:
        state = layer.initial_state(B)
    xt = torch.tensor(x, requires_grad=True)
    hx = tuple(torch.tensor(s, requires_grad=True) for s in state) if lstm else \
        torch.tensor(state, requires_grad=True)
    if lengths is None:
        out, final = module(xt, hx)
    else:
        packed = torch.nn.utils.rnn.pack_padded_sequence(
            xt, torch.as_tensor(np.asarray(lengths), dtype=torch.int64), batch_first=True,
            enforce_sorted=False)
        out, final = module(packed, hx)
        out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=T)
    loss = (out * torch.as_tensor(dout)).sum()
    if dstate is not None:
        pairs = zip(final, dstate) if lstm else [(final, dstate)]
        for f, g in pairs:
            loss = loss + (f * torch.as_tensor(np.asarray(g))).sum()
    loss.backward()

    def np_(t):
        return t.detach().numpy()

    grads = torch_grads_to_rnnkit(module)
    if lstm:
        return Run(np_(out), np_(final[0]), np_(final[1]), np_(xt.grad), np_(hx[0].grad),
                   np_(hx[1].grad), grads)
    return Run(np_(out), np_(final), None, np_(xt.grad), np_(hx.grad), None, grads)


def max_abs_diffs(a: Run, b: Run) -> dict[str, float]:
    """``max |a - b|`` for every output, state and gradient (keys: ``out``, ``dx``, ...)."""
    pairs = {k: (getattr(a, k), getattr(b, k)) for k in ("out", "h", "c", "dx", "dh0", "dc0")}
    assert set(a.grads) == set(b.grads), (sorted(a.grads), sorted(b.grads))
    pairs.update({f"d{k}": (a.grads[k], b.grads[k]) for k in a.grads})
    diffs = {}
    for k, (u, v) in pairs.items():
        if u is None and v is None:
            continue
        assert u.shape == v.shape and u.dtype == v.dtype, (k, u.shape, v.shape, u.dtype, v.dtype)
        diffs[k] = float(np.max(np.abs(u.astype(np.float64) - v.astype(np.float64))))
    return diffs


def assert_matches_torch(layer: Recurrent, x, state=None, lengths=None, dout=None, dstate=None,
                         atol: float | None = None) -> dict[str, float]:
    """Check ``layer`` against PyTorch on one batch; returns the differences it found.

    ``dout`` defaults to ones; ``dstate`` to no gradient on the final state.  The inputs are
    checked to be left unchanged by both runs.
    """
    atol = ATOL[layer.np_dtype] if atol is None else atol
    if dout is None:
        dout = np.ones((*np.shape(x)[:2], layer.output_size), layer.np_dtype)
    args = (x, state, lengths, dout, dstate)
    before = [_copy(a) for a in args]
    ours = run_rnnkit(layer, *args)
    theirs = run_torch(layer, *args)
    for a, b in zip(args, before):
        assert _same(a, b), "an input was modified in place"
    diffs = max_abs_diffs(ours, theirs)
    bad = {k: v for k, v in diffs.items() if not v <= atol}
    assert not bad, f"rnnkit differs from PyTorch by more than {atol:g}: {bad}"
    return diffs


def _copy(a):
    """A copy of an array, a state tuple (whose arrays may differ in shape) or ``None``."""
    if a is None:
        return None
    if isinstance(a, tuple):
        return tuple(np.array(x, copy=True) for x in a)
    return np.array(a, copy=True)


def _same(a, b) -> bool:
    if a is None:
        return b is None
    if isinstance(a, tuple):
        return all(np.array_equal(np.asarray(x), y) for x, y in zip(a, b))
    return np.array_equal(np.asarray(a), b)
