"""The Python API at its boundary: Recurrent.step checks what forward checks, backward refuses
a wrong or used cache, Adam.step and softmax_cross_entropy refuse NaN."""

from __future__ import annotations

import numpy as np
import pytest

from rnnkit.errors import NonFiniteError
from rnnkit.nn.losses import softmax_cross_entropy
from rnnkit.nn.recurrent import make_recurrent
from rnnkit.train.optim import SGD, Adam

CELLS = ["rnn", "gru", "lstm"]


def _layer(cell, dtype="float64", layers=2):
    return make_recurrent(cell, 3, 4, layers, dtype=dtype, rng=np.random.default_rng(0))


@pytest.mark.parametrize("cell", CELLS)
def test_step_with_no_state_starts_from_zeros_like_forward(cell):
    layer = _layer(cell)
    x = np.random.default_rng(1).normal(size=(2, 3))
    out, state = layer.step(x, None)
    ref, ref_state, _ = layer.forward(x[:, None, :])
    np.testing.assert_allclose(out, ref[:, 0], rtol=1e-12)
    if cell == "lstm":
        np.testing.assert_allclose(state.c, ref_state.c, rtol=1e-12)


def test_lstm_step_takes_a_plain_tuple_like_forward():
    layer = _layer("lstm")
    x = np.ones((2, 3))
    h0 = np.full((2, 2, 4), 0.1)
    c0 = np.full((2, 2, 4), -0.2)
    out, _ = layer.step(x, (h0, c0))
    ref, _, _ = layer.forward(x[:, None, :], (h0, c0))
    np.testing.assert_allclose(out, ref[:, 0], rtol=1e-12)


@pytest.mark.parametrize("cell", CELLS)
def test_step_refuses_nan_input(cell):
    with pytest.raises(ValueError, match="x_t contains NaN"):
        _layer(cell).step(np.array([[np.nan, 0.0, 0.0]]), None)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_step_keeps_the_layer_dtype_for_integer_input(cell, dtype):
    out, state = _layer(cell, dtype).step(np.ones((2, 3), dtype=np.int64), None)
    assert out.dtype == np.dtype(dtype)
    assert (state.h if cell == "lstm" else state).dtype == np.dtype(dtype)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("x", [np.ones(3), np.ones((2, 1, 3)), np.ones((2, 5))])
def test_step_names_a_wrong_shape(cell, x):
    with pytest.raises(ValueError, match=r"expected x_t of shape \(B, 3\)"):
        _layer(cell).step(x, None)


@pytest.mark.parametrize("cell", CELLS)
def test_step_names_a_wrong_state(cell):
    with pytest.raises(ValueError, match="expected h0 of shape"):
        state = np.zeros((1, 2, 4))
        _layer(cell).step(np.ones((2, 3)), (state, state) if cell == "lstm" else state)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("cache", [None, {}, {"B": 2}, "garbage", 3])
def test_backward_refuses_what_is_not_this_layers_cache(cell, cache):
    layer = _layer(cell)
    with pytest.raises(ValueError, match="cache"):
        layer.backward(np.ones((2, 5, 4)), cache)


def test_backward_refuses_a_cache_of_another_layer():
    a, b = _layer("gru"), _layer("gru")
    _, _, cache = a.forward(np.ones((2, 5, 3)))
    with pytest.raises(ValueError, match="another layer"):
        b.backward(np.ones((2, 5, 4)), cache)


@pytest.mark.parametrize("cell", CELLS)
def test_backward_refuses_a_used_cache(cell):
    layer = _layer(cell)
    _, _, cache = layer.forward(np.ones((2, 5, 3)))
    layer.backward(np.ones((2, 5, 4)), cache)
    grads = {k: v.copy() for k, v in layer.grads().items()}
    with pytest.raises(ValueError, match="already used"):
        layer.backward(np.ones((2, 5, 4)), cache)
    for k, v in layer.grads().items():  # nothing was added twice
        np.testing.assert_array_equal(v, grads[k])


@pytest.mark.parametrize("opt", [Adam, SGD])
def test_optimizer_refuses_nan_gradients_and_keeps_the_weights(opt):
    w = np.ones((3, 3))
    o = opt({"w": w}, lr=0.1)
    g = np.zeros((3, 3))
    g[1, 2] = np.nan
    with pytest.raises(NonFiniteError, match="gradient 'w' contains NaN or inf"):
        o.step({"w": g})
    np.testing.assert_array_equal(w, np.ones((3, 3)))
    o.step({"w": np.ones((3, 3))})  # still usable


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_softmax_cross_entropy_refuses_non_finite_logits(bad):
    z = np.zeros((2, 3))
    z[1, 0] = bad
    with pytest.raises(NonFiniteError, match="logits contain NaN or inf"):
        softmax_cross_entropy(z, [0, 1])
