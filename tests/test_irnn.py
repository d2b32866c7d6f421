"""Identity initialisation of ReLU RNNs (IRNN; Le, Jaitly & Hinton 2015)."""

from __future__ import annotations

import numpy as np
import pytest

from rnnkit.errors import ConfigError
from rnnkit.recurrent import GRU, LSTM, RNN


@pytest.mark.parametrize("scale", [1.0, 0.5, 0.01])
def test_identity_init_gives_scaled_identity(scale):
    rnn = RNN(3, 6, num_layers=2, bidirectional=True, nonlinearity="relu", init="identity",
              init_scale=scale, dtype="float64", rng=0)
    for name, p in rnn.parameters().items():
        if name.endswith("W_h"):
            np.testing.assert_array_equal(p, scale * np.eye(6))
        elif name.endswith(".b"):
            np.testing.assert_array_equal(p, 0.0)
        else:  # W_x keeps its random (Xavier) initialisation
            assert np.abs(p).max() > 0
    W_x = [p for n, p in rnn.parameters().items() if n.endswith("W_x")]
    assert [w.shape for w in W_x] == [(3, 6), (3, 6), (12, 6), (12, 6)]


def _no_input(rnn: RNN) -> RNN:
    for name, p in rnn.parameters().items():
        if name.endswith("W_x"):
            p[...] = 0.0
    return rnn


def test_irnn_keeps_a_nonnegative_state_and_its_gradient():
    """With W_h = I and no input, ReLU(h I) = h for h >= 0: the state is carried unchanged and
    the gradient reaching h_0 from the last step is the upstream gradient itself -- neither
    vanishes nor explodes, the point of the IRNN."""
    B, T, H = 2, 50, 4
    rnn = _no_input(RNN(3, H, nonlinearity="relu", init="identity", init_scale=1.0,
                        dtype="float64", rng=0))
    h0 = np.abs(np.random.default_rng(1).standard_normal((1, B, H))) + 0.1
    out, hT, cache = rnn.forward(np.random.default_rng(2).standard_normal((B, T, 3)), h0)
    np.testing.assert_array_equal(hT, h0)
    np.testing.assert_array_equal(out, np.broadcast_to(h0[0][:, None], (B, T, H)))
    dout = np.zeros((B, T, H))
    dout[:, -1] = np.random.default_rng(3).standard_normal((B, H))
    _, dh0 = rnn.backward(dout, cache)
    np.testing.assert_array_equal(dh0[0], dout[:, -1])


def test_scaled_identity_decays_geometrically():
    rnn = _no_input(RNN(2, 3, nonlinearity="relu", init="identity", init_scale=0.5,
                        dtype="float64", rng=0))
    h0 = np.ones((1, 1, 3))
    out, _, _ = rnn.forward(np.zeros((1, 4, 2)), h0)
    np.testing.assert_allclose(out[0, :, 0], 0.5 ** np.arange(1, 5))


def test_identity_init_is_for_the_vanilla_rnn_only():
    for klass in (GRU, LSTM):
        with pytest.raises(ConfigError, match="vanilla RNN only"):
            klass(3, 4, init="identity")
