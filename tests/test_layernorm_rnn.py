"""LayerNorm LSTM and GRU (rnnkit.nn.layernorm_rnn): float64 gradient checks of every
parameter (gains, biases, weights) through stacked, bidirectional, variable-length layers, and
the compositions: step() equals forward, windows carry the state, the normalisation holds."""

from __future__ import annotations

import numpy as np
import pytest
from gradcheck import check_module_grads

from rnnkit.errors import ConfigError
from rnnkit.nn.cells.lstm import LSTMState
from rnnkit.nn.layernorm_rnn import LayerNormGRU, LayerNormLSTM, norm

CELLS = [pytest.param(LayerNormLSTM, id="ln-lstm"), pytest.param(LayerNormGRU, id="ln-gru")]
B, T, D, H = 3, 5, 4, 5


def make(klass, num_layers=1, bidirectional=False, seed=0, **kw):
    layer = klass(D, H, num_layers, bidirectional=bidirectional, dtype="float64", rng=seed, **kw)
    rng = np.random.default_rng(seed + 100)
    for p in layer.parameters().values():  # gains away from 1, biases away from 0
        p += rng.uniform(-0.5, 0.5, p.shape)
    return layer


def random_state(layer, rng):
    zero = layer.initial_state(B)
    if isinstance(zero, tuple):
        return LSTMState(*(rng.uniform(-1, 1, s.shape) for s in zero))
    return rng.uniform(-1, 1, zero.shape)


def gradcheck(layer, x, state, lengths=None, seed=None):
    lstm = layer.cell == "lstm"

    def fwd(x, h0, c0=None):
        rng = None if seed is None else np.random.default_rng(seed)
        out, sT, cache = layer.forward(x, LSTMState(h0, c0) if lstm else h0, lengths, rng=rng)
        return (out, sT), cache

    def bwd(douts, cache):
        dx, ds = layer.backward(douts[0], cache, douts[1])
        return {"x": dx, "h0": ds.h, "c0": ds.c} if lstm else {"x": dx, "h0": ds}

    inputs = {"x": x, "h0": state[0] if lstm else state}
    if lstm:
        inputs["c0"] = state.c
    return check_module_grads(fwd, bwd, inputs, layer.parameters(), layer.grads())


@pytest.mark.parametrize("klass", CELLS)
@pytest.mark.parametrize("num_layers,bidirectional,lengths", [
    (1, False, None), (2, False, [5, 2, 4]), (1, True, [3, 5, 1]), (2, True, None)])
def test_gradcheck(klass, num_layers, bidirectional, lengths):
    layer = make(klass, num_layers, bidirectional)
    rng = np.random.default_rng(1)
    errors = gradcheck(layer, rng.standard_normal((B, T, D)), random_state(layer, rng), lengths)
    assert {"layers.0.fwd.g_x", "layers.0.fwd.g_h", "layers.0.fwd.b"} <= set(errors)


@pytest.mark.parametrize("klass", CELLS)
def test_gradcheck_with_weight_drop_and_locked_dropout(klass):
    layer = make(klass, 2, dropout=0.3, weight_drop=0.4, locked=True)
    rng = np.random.default_rng(2)
    gradcheck(layer, rng.standard_normal((B, T, D)), random_state(layer, rng), seed=5)


@pytest.mark.parametrize("klass", CELLS)
def test_step_equals_forward_and_windows_carry_the_state(klass):
    layer = make(klass, 2)
    x = np.random.default_rng(3).standard_normal((B, 8, D))
    out, final, _ = layer.forward(x)
    state = layer.initial_state(B)
    for t in range(8):
        o, state = layer.step(x[:, t], state)
        np.testing.assert_allclose(o, out[:, t], rtol=0, atol=1e-12)
    a, s, _ = layer.forward(x[:, :3])
    b, s, _ = layer.forward(x[:, 3:], s)
    np.testing.assert_allclose(np.concatenate([a, b], 1), out, rtol=0, atol=1e-12)


def test_norm_has_zero_mean_unit_variance_and_the_input_scale_does_not_matter():
    u = np.random.default_rng(4).standard_normal((3, 7)) * 50 + 9
    u_hat, _ = norm(u)
    np.testing.assert_allclose(u_hat.mean(-1), 0, atol=1e-12)
    np.testing.assert_allclose(u_hat.var(-1), 1, atol=1e-5)
    layer = LayerNormLSTM(D, H, dtype="float64", rng=0)
    layer.dirs[0][0].param["b"][...] = 0  # then LN(x W_x) ignores the scale of x
    x = np.random.default_rng(5).standard_normal((B, T, D))
    np.testing.assert_allclose(layer.forward(1000 * x)[0], layer.forward(10 * x)[0], atol=1e-6)


def test_config_round_trip_and_refusals():
    layer = make(LayerNormGRU, 2, True)
    again = LayerNormGRU.from_config(layer.config())
    assert again.config() == layer.config() and isinstance(again, LayerNormGRU)
    with pytest.raises(ConfigError, match="no peepholes"):
        LayerNormLSTM(D, H, peephole=True)
    with pytest.raises(ConfigError, match="reset_after=True"):
        LayerNormGRU(D, H, reset_after=False)
