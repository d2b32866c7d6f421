"""rnnkit.nn.recurrent: gradient checks of every layer configuration and the compositions users
call.

Every backward is checked against float64 central differences (tests/gradcheck.py) for the
input, the initial state (h and c) and every parameter, with random nonzero biases and
peepholes.  The composition tests pin the forward numbers: the layer equals stepping by hand,
rows with ``lengths`` equal the unpadded rows run alone, a stack equals chained layers, and
windows with the state carried equal one long forward.
"""

from __future__ import annotations

import itertools
import re

import numpy as np
import pytest
from gradcheck import check_module_grads

from conftest import CELLS
from rnnkit.nn.cells.lstm import LSTMState
from rnnkit.nn.recurrent import LSTM, RNN, make_recurrent

DIRS = [pytest.param(False, id="uni"), pytest.param(True, id="bi")]
B, T, D, H = 3, 4, 3, 2
LENGTHS = [T, 2, T - 1]  # unsorted, one full row and two padded ones


def make_layer(cell, opts, num_layers=1, bidirectional=False, *, D=D, H=H, dropout=0.0,
               dtype="float64", seed=0):
    """A layer whose every parameter (biases and peepholes included) is random and nonzero."""
    layer = make_recurrent(cell, D, H, num_layers, bidirectional=bidirectional,
                           dropout=dropout, dtype=dtype, rng=seed, **opts)
    rng = np.random.default_rng(seed + 1000)
    for p in layer.parameters().values():
        p[...] = rng.uniform(-0.9, 0.9, p.shape)
    return layer


def random_state(layer, B, rng):
    shape = (layer.cfg.num_layers * layer.cfg.dirs, B, layer.hidden_size)
    h = rng.uniform(-0.9, 0.9, shape)
    return LSTMState(h, rng.standard_normal(shape)) if layer.cell == "lstm" else h


def state_arrays(state) -> list[np.ndarray]:
    return list(state) if isinstance(state, LSTMState) else [state]


def assert_state_close(a, b, **tol):
    for x, y in zip(state_arrays(a), state_arrays(b)):
        np.testing.assert_allclose(x, y, **tol)


def gradcheck_layer(layer, x, state, lengths=None, dropout_seed=None):
    """Gradcheck x, h0 (and c0) and every parameter of ``layer`` through forward/backward."""
    lstm = layer.cell == "lstm"

    def fwd(x, h0, c0=None):
        s = LSTMState(h0, c0) if lstm else h0
        rng = None if dropout_seed is None else np.random.default_rng(dropout_seed)
        out, sT, cache = layer.forward(x, s, lengths, rng=rng)
        return (out, sT), cache

    def bwd(douts, cache):
        dout, dsT = douts
        dx, ds0 = layer.backward(dout, cache, dsT)
        return {"x": dx, "h0": ds0.h, "c0": ds0.c} if lstm else {"x": dx, "h0": ds0}

    inputs = {"x": x, "h0": state_arrays(state)[0]}
    if lstm:
        inputs["c0"] = state.c
    return check_module_grads(fwd, bwd, inputs, layer.parameters(), layer.grads())


# -- gradient checks --------------------------------------------------------------------------
# Every combination for 1 and 2 layers; a third layer adds nothing new with equal lengths.
STACKS = [
    pytest.param(n, bi, lengths, id=f"{n}-{'bi' if bi else 'uni'}-{name}")
    for n in (1, 2, 3)
    for bi in (False, True)
    for name, lengths in (("equal", None), ("variable", LENGTHS))
    if n < 3 or lengths is not None
]


@pytest.mark.parametrize("num_layers, bidirectional, lengths", STACKS)
@pytest.mark.parametrize("cell, opts", CELLS)
def test_gradcheck(cell, opts, num_layers, bidirectional, lengths, kernels):
    rng = np.random.default_rng(1)
    layer = make_layer(cell, opts, num_layers, bidirectional)
    x = rng.standard_normal((B, T, D))
    errors = gradcheck_layer(layer, x, random_state(layer, B, rng), lengths)
    assert set(errors) >= {"x", "h0", *layer.parameters()}


@pytest.mark.parametrize("bidirectional", DIRS)
@pytest.mark.parametrize("cell, opts", CELLS)
def test_gradcheck_dropout_training(cell, opts, bidirectional):
    """With a fresh Generator of the same seed per forward the masks repeat, so the dropout
    between layers is a fixed linear map that the check goes through."""
    rng = np.random.default_rng(2)
    layer = make_layer(cell, opts, 2, bidirectional, dropout=0.5)
    x = rng.standard_normal((B, T, D))
    gradcheck_layer(layer, x, random_state(layer, B, rng), LENGTHS, dropout_seed=7)


def test_gradcheck_single_row_with_padding():
    """B = 1: the transposed dout is a view of the caller's array; it must not be modified."""
    rng = np.random.default_rng(3)
    layer = make_layer("gru", {}, 2, True)
    gradcheck_layer(layer, rng.standard_normal((1, T, D)), random_state(layer, 1, rng), [3])


def test_backward_accumulates_and_keeps_caller_arrays():
    rng = np.random.default_rng(4)
    layer = make_layer("lstm", {"peephole": True}, 2, True)
    x = rng.standard_normal((1, T, D))
    out, state, cache = layer.forward(x, lengths=[2])
    dout = rng.standard_normal(out.shape)
    dstate = LSTMState(*(rng.standard_normal(s.shape) for s in state))
    copies = [a.copy() for a in (x, dout, *dstate)]
    layer.zero_grad()
    dx1, ds1 = layer.backward(dout, cache, dstate)
    once = {k: g.copy() for k, g in layer.grads().items()}
    with pytest.raises(ValueError, match="already used"):  # PyTorch: retain_graph=False
        layer.backward(dout, cache, dstate)
    _, _, cache = layer.forward(x, lengths=[2])
    dx2, ds2 = layer.backward(dout, cache, dstate)
    for a, b in zip(copies, (x, dout, *dstate)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(dx1, dx2)
    assert_state_close(ds1, ds2, rtol=0, atol=0)
    for k, g in layer.grads().items():
        np.testing.assert_allclose(g, 2 * once[k], rtol=1e-14, atol=0)
    layer.zero_grad()
    assert all(not g.any() for g in layer.grads().values())


# -- dropout between layers -------------------------------------------------------------------
@pytest.mark.parametrize("cell, opts", CELLS[::2])
def test_dropout_off_in_eval_and_between_layers_only(cell, opts):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((B, T, D))
    plain = make_layer(cell, opts, 2, True)
    dropped = make_layer(cell, opts, 2, True, dropout=0.5)
    dropped.load_state_dict(plain.state_dict())
    ref, ref_state, _ = plain.forward(x, lengths=LENGTHS)

    out, _, _ = dropped.forward(x, lengths=LENGTHS, rng=np.random.default_rng(0))
    assert not np.allclose(out, ref)  # training: layer 1 sees a dropped input
    again, _, _ = dropped.forward(x, lengths=LENGTHS, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(out, again)  # same Generator state, same masks

    dropped.eval()
    out, state, _ = dropped.forward(x, lengths=LENGTHS, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(out, ref)
    assert_state_close(state, ref_state, rtol=0, atol=0)

    one_plain, one_drop = make_layer(cell, opts, 1), make_layer(cell, opts, 1, dropout=0.5)
    one_drop.load_state_dict(one_plain.state_dict())
    np.testing.assert_array_equal(one_plain.forward(x)[0], one_drop.forward(x)[0])


# -- compositions -----------------------------------------------------------------------------
@pytest.mark.parametrize("num_layers", [1, 3])
@pytest.mark.parametrize("cell, opts", CELLS)
def test_layer_equals_stepping_by_hand(cell, opts, num_layers):
    rng = np.random.default_rng(6)
    layer = make_layer(cell, opts, num_layers)
    x = rng.standard_normal((B, T, D))
    state0 = random_state(layer, B, rng)
    out, final, _ = layer.forward(x, state0)
    state = state0
    for t in range(T):
        out_t, state = layer.step(x[:, t], state)
        np.testing.assert_allclose(out[:, t], out_t, rtol=1e-12, atol=1e-14)
    assert_state_close(final, state, rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueError, match="unidirectional"):
        make_layer(cell, opts, bidirectional=True).step(x[:, 0], None)


@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("bidirectional", DIRS)
@pytest.mark.parametrize("cell, opts", CELLS)
def test_lengths_equal_each_row_alone(cell, opts, bidirectional, num_layers):
    """Padded rows give exactly what the unpadded row gives alone: outputs, zeros past the end,
    final states taken at the row's last real step; the padding values never matter."""
    rng = np.random.default_rng(7)
    layer = make_layer(cell, opts, num_layers, bidirectional)
    lengths = [T, 2, 1]
    x = rng.standard_normal((B, T, D))
    state0 = random_state(layer, B, rng)
    out, final, _ = layer.forward(x, state0, lengths)
    noisy = x.copy()
    for b, n in enumerate(lengths):
        noisy[b, n:] = 1e3 * rng.standard_normal((T - n, D))
    out2, final2, _ = layer.forward(noisy, state0, lengths)
    np.testing.assert_array_equal(out, out2)
    assert_state_close(final, final2, rtol=0, atol=0)
    Hd = layer.hidden_size
    for b, n in enumerate(lengths):
        row_state = type(state0)(*(s[:, b : b + 1] for s in state0)) if cell == "lstm" \
            else state0[:, b : b + 1]
        ref, ref_final, _ = layer.forward(x[b : b + 1, :n], row_state)
        np.testing.assert_allclose(out[b, :n], ref[0], rtol=1e-12, atol=1e-14)
        assert not out[b, n:].any()  # exactly zero
        for s, r in zip(state_arrays(final), state_arrays(ref_final)):
            np.testing.assert_allclose(s[:, b], r[:, 0], rtol=1e-12, atol=1e-14)
        # The pitfall in the docstring: where each direction's final state sits in `out`.
        h_last = state_arrays(final)[0][-layer.cfg.dirs :, b]
        np.testing.assert_array_equal(h_last[0], out[b, n - 1, :Hd])
        if bidirectional:
            np.testing.assert_array_equal(h_last[1], out[b, 0, Hd:])


def test_lengths_all_full_equal_no_lengths():
    rng = np.random.default_rng(8)
    layer = make_layer("lstm", {"peephole": True}, 2, True)
    x = rng.standard_normal((B, T, D))
    out, state, _ = layer.forward(x)
    out2, state2, _ = layer.forward(x, lengths=np.full(B, T))
    np.testing.assert_array_equal(out, out2)
    assert_state_close(state, state2, rtol=0, atol=0)


def copy_weights(src, src_layer: int, dst) -> None:
    """Layer ``src_layer`` of the stack ``src`` into the one-layer ``dst``."""
    for d, unit in enumerate(src.dirs[src_layer]):
        for name, value in unit.param.items():
            dst.dirs[0][d].param[name][...] = value


@pytest.mark.parametrize("bidirectional", DIRS)
@pytest.mark.parametrize("cell, opts", CELLS)
def test_stack_equals_chained_layers(cell, opts, bidirectional):
    """A 3-layer stack equals three 1-layer layers chained, forward and backward."""
    rng = np.random.default_rng(9)
    L = 3
    stack = make_layer(cell, opts, L, bidirectional)
    dirs = stack.cfg.dirs
    singles = []
    for k in range(L):
        single = make_layer(cell, opts, 1, bidirectional, D=D if k == 0 else dirs * H)
        copy_weights(stack, k, single)
        singles.append(single)
    x = rng.standard_normal((B, T, D))
    state0 = random_state(stack, B, rng)
    lengths = [T, 3, 1]
    out, final, cache = stack.forward(x, state0, lengths)
    dout = rng.standard_normal(out.shape)
    dfinal = random_state(stack, B, rng)
    stack.zero_grad()
    dx, dstate0 = stack.backward(dout, cache, dfinal)

    def part(s, k):  # the state rows of layer k
        sl = slice(k * dirs, (k + 1) * dirs)
        return LSTMState(s.h[sl], s.c[sl]) if cell == "lstm" else s[sl]

    inp, caches = x, []
    for k, single in enumerate(singles):
        inp, fk, ck = single.forward(inp, part(state0, k), lengths)
        caches.append(ck)
        assert_state_close(fk, part(final, k), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(inp, out, rtol=1e-12, atol=1e-14)
    g = dout
    for k in range(L - 1, -1, -1):
        singles[k].zero_grad()
        g, ds0 = singles[k].backward(g, caches[k], part(dfinal, k))
        assert_state_close(ds0, part(dstate0, k), rtol=1e-10, atol=1e-13)
        for name, value in singles[k].grads().items():
            stacked = stack.grads()[name.replace("layers.0.", f"layers.{k}.")]
            np.testing.assert_allclose(value, stacked, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(g, dx, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("cell, opts", CELLS)
def test_truncated_bptt_windows_equal_one_long_pass(cell, opts):
    """Windows with the state carried give the long forward; carrying dstate back across the
    windows gives the long backward (full BPTT assembled from pieces)."""
    rng = np.random.default_rng(10)
    layer = make_layer(cell, opts, 2)
    T_long, cuts = 10, [0, 3, 4, 8, 10]
    x = rng.standard_normal((B, T_long, D))
    state0 = random_state(layer, B, rng)
    out, final, cache = layer.forward(x, state0)
    dout = rng.standard_normal(out.shape)
    layer.zero_grad()
    dx, dstate0 = layer.backward(dout, cache)
    full_grads = {k: g.copy() for k, g in layer.grads().items()}

    state, outs, caches = state0, [], []
    for a, b in itertools.pairwise(cuts):
        o, state, c = layer.forward(x[:, a:b], state)
        outs.append(o)
        caches.append(c)
    np.testing.assert_allclose(np.concatenate(outs, axis=1), out, rtol=1e-12, atol=1e-14)
    assert_state_close(state, final, rtol=1e-12, atol=1e-14)

    layer.zero_grad()
    ds, dxs = None, []
    for (a, b), c in reversed(list(zip(itertools.pairwise(cuts), caches))):
        dxw, ds = layer.backward(dout[:, a:b], c, ds)
        dxs.append(dxw)
    np.testing.assert_allclose(np.concatenate(dxs[::-1], axis=1), dx, rtol=1e-10, atol=1e-13)
    assert_state_close(ds, dstate0, rtol=1e-10, atol=1e-13)
    for k, g in layer.grads().items():
        np.testing.assert_allclose(g, full_grads[k], rtol=1e-10, atol=1e-13)


# -- numerics and dtypes ----------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("bidirectional", DIRS)
@pytest.mark.parametrize("cell, opts", CELLS)
def test_extreme_inputs_stay_finite(cell, opts, bidirectional, dtype):
    rng = np.random.default_rng(11)
    layer = make_layer(cell, opts, 2, bidirectional, dtype=dtype)
    x = 1e4 * rng.standard_normal((B, T, D))
    out, state, cache = layer.forward(x, lengths=LENGTHS)
    dx, ds0 = layer.backward(rng.standard_normal(out.shape), cache)
    for a in [out, dx, *state_arrays(state), *state_arrays(ds0), *layer.grads().values()]:
        assert np.isfinite(a).all()
    if opts.get("nonlinearity") != "relu":
        assert np.abs(out).max() <= 1.0  # tanh / gated outputs are bounded
    if not bidirectional:
        assert np.isfinite(layer.step(x[:, 0], layer.initial_state(B))[0]).all()


@pytest.mark.parametrize("cell, opts", CELLS)
def test_dtypes(cell, opts):
    rng = np.random.default_rng(12)
    x64 = rng.standard_normal((B, T, D))
    layer32 = make_recurrent(cell, D, H, 2, bidirectional=True, rng=0, **opts)  # float32 default
    assert all(p.dtype == np.float32 for p in layer32.parameters().values())
    layer64 = make_layer(cell, opts, 2, True)
    layer32.load_state_dict(layer64.state_dict())
    for layer, want in ((layer32, np.float32), (layer64, np.float64)):
        for x in (x64, x64.astype(np.float32)):
            out, state, cache = layer.forward(x, lengths=LENGTHS)
            dx, ds0 = layer.backward(np.ones(out.shape), cache)
            arrays = [out, dx, *state_arrays(state), *state_arrays(ds0)]
            assert all(a.dtype == want for a in arrays), [a.dtype for a in arrays]
            assert all(g.dtype == want for g in layer.grads().values())
            assert layer.initial_state(2).__class__ is state.__class__
    out32 = layer32.forward(x64, lengths=LENGTHS)[0]
    out64 = layer64.forward(x64, lengths=LENGTHS)[0]
    np.testing.assert_allclose(out32, out64, rtol=1e-4, atol=1e-5)


# -- bad input --------------------------------------------------------------------------------
def _raises(message: str):
    return pytest.raises(ValueError, match=re.escape(message))


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_bad_x(cell):
    layer = make_recurrent(cell, 4, 3, rng=0)
    name = type(layer).__name__
    with _raises(f"{name}: expected x of shape (B, T, 4), got (2, 4)"):
        layer.forward(np.zeros((2, 4)))
    with _raises(f"{name}: expected x of shape (B, T, 4), got (2, 5, 4, 1)"):
        layer.forward(np.zeros((2, 5, 4, 1)))
    with _raises(f"{name}: expected x of shape (B, T, 4), got (2, 5, 3)"):
        layer.forward(np.zeros((2, 5, 3)))
    for bad, word in ((np.nan, "NaN"), (np.inf, "inf"), (-np.inf, "inf")):
        x = np.zeros((2, 5, 4))
        x[1, 3, 2] = bad
        with _raises(f"{name}: x contains {word}; expected finite values"):
            layer.forward(x)
    with pytest.raises(ValueError, match=r"at least one step.*\(2, 0, 4\)"):
        layer.forward(np.zeros((2, 0, 4)))


@pytest.mark.parametrize(
    "lengths, message",
    [
        ([5, 5], "expected lengths of shape (3,), got (2,)"),
        ([[5, 5, 5]], "expected lengths of shape (3,), got (1, 3)"),
        ([5, 0, 2], "expected every length in 1..5, got min 0 and max 5"),
        ([5, 6, 2], "expected every length in 1..5, got min 2 and max 6"),
        ([5, -1, 2], "expected every length in 1..5, got min -1 and max 5"),
        ([5, 2.5, 2], "expected integer lengths, got dtype float64"),
        (["5", "1", "2"], "expected integer lengths, got dtype <U1"),
    ],
)
def test_bad_lengths(lengths, message):
    layer = make_recurrent("gru", 4, 3, rng=0)
    with _raises(f"GRU: {message}"):
        layer.forward(np.zeros((3, 5, 4)), lengths=lengths)


def test_float_lengths_with_integer_values_are_accepted():
    layer = make_layer("rnn", {}, D=4)
    x = np.random.default_rng(13).standard_normal((3, 5, 4))
    np.testing.assert_array_equal(layer.forward(x, lengths=[5.0, 2.0, 3.0])[0],
                                  layer.forward(x, lengths=[5, 2, 3])[0])


def test_bad_state():
    x = np.zeros((3, 5, 4))
    rnn = RNN(4, 2, num_layers=2, bidirectional=True, rng=0)
    with _raises("RNN: expected h0 of shape (4, 3, 2), got (2, 3, 2)"):
        rnn.forward(x, np.zeros((2, 3, 2)))
    with _raises("RNN: expected h0 of shape (4, 3, 2), got (4, 2, 2)"):
        rnn.forward(x, np.zeros((4, 2, 2)))
    lstm = LSTM(4, 2, rng=0)
    with _raises("LSTM: expected the state as a tuple (h, c) of arrays of shape (1, 3, 2), "
                 "got ndarray"):
        lstm.forward(x, np.zeros((1, 3, 2)))
    with _raises("LSTM: expected c0 of shape (1, 3, 2), got (1, 3, 3)"):
        lstm.forward(x, (np.zeros((1, 3, 2)), np.zeros((1, 3, 3))))
    with _raises("LSTM: h0 contains NaN; expected finite values"):
        lstm.forward(x, (np.full((1, 3, 2), np.nan), np.zeros((1, 3, 2))))
    _, _, cache = lstm.forward(x)
    with _raises("LSTM: expected dout of shape (3, 5, 2), got (3, 4, 2)"):
        lstm.backward(np.zeros((3, 4, 2)), cache)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_the_final_state_of_one_layer_is_not_a_view_of_the_cache(cell):
    """The caller may change the final state in place: it shares no memory with the arrays
    the backward reads."""
    from rnnkit.nn.recurrent import make_recurrent

    layer = make_recurrent(cell, 3, 5, 1, dtype="float64", rng=0)
    _, state, cache = layer.forward(np.random.default_rng(0).standard_normal((2, 4, 3)))
    kept = [a for a in cache["layers"][0]["dirs"][0].values() if isinstance(a, np.ndarray)]
    assert kept
    for s in (state if isinstance(state, tuple) else (state,)):
        assert not any(np.shares_memory(s, a) for a in kept)
