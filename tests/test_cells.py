"""rnnkit.nn.cells: the pure cell functions against textbook formulas, and their backward passes.

The cells take the input projections ``xp`` (T, B, G*H) in processing order and a mask of real
steps; the references below are the equations of each cell written the plain way, with
``1 / (1 + exp(-a))`` for the sigmoid, so the sigmoid-via-tanh trick is checked as well.
"""

from __future__ import annotations

import numpy as np
import pytest
from gradcheck import check_module_grads

from conftest import CELLS
from rnnkit.nn.cells import OPTIONS
from rnnkit.nn.cells.activations import (
    GATES,
    SIGMOID_GATES,
    gate_scales,
    gate_slice,
    num_gates,
    sigmoid,
    sigmoid_,
)
from rnnkit.nn.cells.dispatch import cell_module
from rnnkit.nn.cells.lstm import LSTMState

T, B, H = 4, 3, 3
LENGTHS = np.array([4, 1, 2])


def sig(a):
    return 1.0 / (1.0 + np.exp(-a))


# -- textbook references, one step ------------------------------------------------------------
def ref_step(cell, opts, xp_t, state, p):
    if cell == "rnn":
        a = xp_t + state @ p["W_h"]
        return np.tanh(a) if opts["nonlinearity"] == "tanh" else np.maximum(a, 0)
    if cell == "gru":
        h = state
        W_r, W_z, W_n = (p["W_h"][:, gate_slice("gru", g, H)] for g in "rzn")
        x_r, x_z, x_n = (xp_t[:, gate_slice("gru", g, H)] for g in "rzn")
        r = sig(x_r + h @ W_r)
        z = sig(x_z + h @ W_z)
        if opts["reset_after"]:
            n = np.tanh(x_n + r * (h @ W_n + p["b_hn"]))
        else:
            n = np.tanh(x_n + (r * h) @ W_n)
        return (1 - z) * n + z * h
    h, c = state
    a = xp_t + h @ p["W_h"]
    a_i, a_f, a_g, a_o = (a[:, gate_slice("lstm", g, H)] for g in "ifgo")
    peep = opts["peephole"]
    i = sig(a_i + (p["p_i"] * c if peep else 0))
    f = sig(a_f + (p["p_f"] * c if peep else 0))
    g = np.tanh(a_g)
    c_new = f * c + i * g
    o = sig(a_o + (p["p_o"] * c_new if peep else 0))
    return LSTMState(o * np.tanh(c_new), c_new)


def ref_forward(cell, opts, xp, state, p, lengths):
    """Plain loop; the state is carried unchanged past each row's length."""
    hs = []
    for t in range(xp.shape[0]):
        new = ref_step(cell, opts, xp[t], state, p)
        real = (t < lengths)[:, None]
        if cell == "lstm":
            state = LSTMState(np.where(real, new.h, state.h), np.where(real, new.c, state.c))
            hs.append(state.h)
        else:
            state = np.where(real, new, state)
            hs.append(state)
    return np.stack(hs), state


# -- helpers ----------------------------------------------------------------------------------
def make_case(cell, opts, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    G = num_gates(cell)
    p = {"W_h": rng.uniform(-0.8, 0.8, (H, G * H))}
    if cell == "gru" and opts["reset_after"]:
        p["b_hn"] = rng.uniform(-0.8, 0.8, H)
    if cell == "lstm" and opts["peephole"]:
        for k in ("p_i", "p_f", "p_o"):
            p[k] = rng.uniform(-0.8, 0.8, H)
    p = {k: v.astype(dtype) for k, v in p.items()}
    xp = rng.standard_normal((T, B, G * H)).astype(dtype)
    h0 = rng.uniform(-0.9, 0.9, (B, H)).astype(dtype)
    state = LSTMState(h0, rng.standard_normal((B, H)).astype(dtype)) if cell == "lstm" else h0
    return xp, state, p


def mask_of(lengths):
    if lengths is None:
        return None, None
    return (np.arange(T)[:, None] < lengths[None, :])[..., None], int(lengths.min())


def cell_of(cell, opts, dtype=np.float64):
    """The cell's module (as the dispatch picks it under the ``kernels`` fixture) and its
    equation options."""
    o = {k: v for k, v in opts.items() if k in OPTIONS[cell]}
    return cell_module(cell, dtype, **o), o


# -- activations ------------------------------------------------------------------------------
def test_sigmoid_via_tanh_equals_textbook_and_never_overflows():
    x = np.linspace(-30, 30, 601)
    np.testing.assert_allclose(sigmoid(x), sig(x), rtol=1e-14, atol=1e-16)
    y = x.copy()
    assert sigmoid_(y) is y
    np.testing.assert_array_equal(y, sigmoid(x))
    with np.errstate(all="raise"):
        big = np.array([-1e300, -1e4, 1e4, 1e300])
        np.testing.assert_array_equal(sigmoid(big), [0, 0, 1, 1])
        big32 = np.array([-3e38, -1e4, 1e4, 3e38], np.float32)
        np.testing.assert_array_equal(sigmoid(big32), [0, 0, 1, 1])
        assert sigmoid(big32).dtype == np.float32


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_gate_layout(cell):
    H_ = 5
    assert num_gates(cell) == len(GATES[cell])
    cols = np.concatenate([np.arange(20)[gate_slice(cell, g, H_)] for g in GATES[cell]])
    np.testing.assert_array_equal(cols, np.arange(num_gates(cell) * H_))
    pre, shift = gate_scales(cell, H_, np.float32)
    assert pre.dtype == shift.dtype == np.float32
    for g in GATES[cell]:
        sl = gate_slice(cell, g, H_)
        want = (0.5, 0.5) if g in SIGMOID_GATES[cell] else (1.0, 0.0)
        assert (pre[sl] == want[0]).all() and (shift[sl] == want[1]).all()
    assert GATES["lstm"] == ("i", "f", "g", "o") and GATES["gru"] == ("r", "z", "n")


# -- forward against the references -----------------------------------------------------------
def arrays(state) -> list[np.ndarray]:
    return list(state) if isinstance(state, LSTMState) else [state]


@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["equal", "variable"])
@pytest.mark.parametrize("cell, opts", CELLS)
def test_forward_equals_textbook(cell, opts, lengths, kernels):
    xp, state, p = make_case(cell, opts, seed=1)
    mask, full = mask_of(lengths)
    real = np.full(B, T) if lengths is None else lengths
    ref_hs, ref_final = ref_forward(cell, opts, xp, state, p, real)
    mod, o = cell_of(cell, opts)
    Hs, final, _ = mod.forward(xp.copy(), state, p, mask, full, **o)
    np.testing.assert_array_equal(Hs[0], arrays(state)[0])
    np.testing.assert_allclose(Hs[1:], ref_hs, rtol=1e-13, atol=1e-15)
    for a, b in zip(arrays(final), arrays(ref_final)):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("cell, opts", CELLS)
def test_step_equals_textbook(cell, opts, kernels):
    xp, state, p = make_case(cell, opts, seed=6)
    mod, o = cell_of(cell, opts)
    ref = state
    for t in range(T):
        state = mod.step(xp[t].copy(), state, p, **o)
        ref = ref_step(cell, opts, xp[t], ref, p)
        assert type(state) is type(ref)
        for a, b in zip(arrays(state), arrays(ref)):
            np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("cell, opts", CELLS)
def test_forward_keeps_gates_in_the_cache_and_keeps_state(cell, opts, kernels):
    """Documented contract: the cache's ``A`` holds the gate activations (C-contiguous
    ``xp`` itself is overwritten with them); the state and p are kept."""
    xp, state, p = make_case(cell, opts, seed=2)
    work = xp.copy()
    saved = [a.copy() for a in [*arrays(state), *p.values()]]
    mod, o = cell_of(cell, opts)
    _, _, cache = mod.forward(work, state, p, None, None, **o)
    for a, b in zip(saved, [*arrays(state), *p.values()]):
        np.testing.assert_array_equal(a, b)
    if cell != "rnn":
        assert cache["A"] is work
        sg = np.concatenate([np.arange(num_gates(cell) * H)[gate_slice(cell, g, H)]
                             for g in SIGMOID_GATES[cell]])
        assert ((work[..., sg] > 0) & (work[..., sg] < 1)).all()  # sigmoid gate values


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cell, opts", CELLS)
def test_dtype_and_extremes(cell, opts, dtype, kernels):
    xp, state, p = make_case(cell, opts, seed=3, dtype=dtype)
    xp *= dtype(1e4)
    mask, full = mask_of(LENGTHS)
    mod, o = cell_of(cell, opts, dtype)
    with np.errstate(over="raise", invalid="raise"):
        Hs, _, cache = mod.forward(xp, state, p, mask, full, **o)
        dxp, ds0, dp = mod.backward(np.ones((T, B, H), dtype) * mask, None, cache)
    for a in [Hs, dxp, *arrays(ds0), *dp.values()]:
        assert a.dtype == dtype and np.isfinite(a).all()
    assert set(dp) == set(p)


# -- backward ---------------------------------------------------------------------------------
@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["equal", "variable"])
@pytest.mark.parametrize("cell, opts", CELLS)
def test_cell_gradcheck(cell, opts, lengths, kernels):
    """Gradients of xp, the initial state and W_h (b_hn, peepholes) of one cell sequence.

    The outputs are ``Hs[1:]`` masked (the sequence driver zeroes padded outputs, so the cells
    receive dHs = 0 there) and the final state."""
    xp, state, p = make_case(cell, opts, seed=4)
    mask, full = mask_of(lengths)
    m = 1.0 if mask is None else mask
    is_lstm = cell == "lstm"
    mod, o = cell_of(cell, opts)

    def fwd(xp, h0, c0=None):
        s = LSTMState(h0, c0) if is_lstm else h0
        Hs, final, cache = mod.forward(xp.copy(), s, p, mask, full, **o)
        return (Hs[1:] * m, final), cache

    def bwd(douts, cache):
        dHs, dfinal = douts
        dxp, ds0, dp = mod.backward(dHs * m, dfinal, cache)  # through the mask
        grads = {"xp": dxp, **dp}
        if is_lstm:
            grads.update(h0=ds0.h, c0=ds0.c)
        else:
            grads["h0"] = ds0
        return grads

    inputs = {"xp": xp, "h0": state[0] if is_lstm else state}
    if is_lstm:
        inputs["c0"] = state.c
    check_module_grads(fwd, bwd, inputs, p, seed=5)
