"""The projection LSTM (rnnkit.nn.lstmp): float64 gradient checks through the layer (stacked,
bidirectional, variable lengths) and equality with ``torch.nn.LSTM(proj_size=P)``."""

from __future__ import annotations

import numpy as np
import pytest
from gradcheck import check_module_grads

from rnnkit.errors import ConfigError
from rnnkit.nn.cells.lstm import LSTMState
from rnnkit.nn.lstmp import LSTMP, LSTMPConfig

B, T, D, H, P = 3, 5, 4, 6, 3


def make(num_layers=1, bidirectional=False, dtype="float64", seed=0):
    layer = LSTMP(D, H, num_layers, proj_size=P, bidirectional=bidirectional, dtype=dtype,
                  rng=seed)
    rng = np.random.default_rng(seed + 100)
    for p in layer.parameters().values():  # nonzero biases, weights of both signs
        p[...] = rng.uniform(-0.6, 0.6, p.shape)
    return layer


def random_state(layer, rng, B=B):
    zero = layer.initial_state(B)
    return LSTMState(*(rng.uniform(-0.9, 0.9, s.shape) for s in zero))


@pytest.mark.parametrize("num_layers,bidirectional,lengths", [
    (1, False, None), (2, False, [5, 2, 4]), (1, True, [3, 5, 1]), (2, True, None)])
def test_gradcheck(num_layers, bidirectional, lengths):
    layer = make(num_layers, bidirectional)
    rng = np.random.default_rng(1)
    state = random_state(layer, rng)

    def fwd(x, h0, c0):
        out, sT, cache = layer.forward(x, LSTMState(h0, c0), lengths)
        return (out, sT), cache

    def bwd(douts, cache):
        dx, ds0 = layer.backward(douts[0], cache, douts[1])
        return {"x": dx, "h0": ds0.h, "c0": ds0.c}

    errors = check_module_grads(fwd, bwd, {"x": rng.standard_normal((B, T, D)),
                                           "h0": state.h, "c0": state.c},
                                layer.parameters(), layer.grads())
    assert any(k.endswith("W_hr") for k in errors)


def test_gradcheck_with_weight_drop_and_locked_dropout():
    layer = LSTMP(D, H, 2, proj_size=P, dtype="float64", rng=0, dropout=0.3, weight_drop=0.5,
                  locked=True)
    rng = np.random.default_rng(1)
    state = random_state(layer, rng)

    def fwd(x, h0, c0):
        out, sT, cache = layer.forward(x, LSTMState(h0, c0), rng=np.random.default_rng(7))
        return (out, sT), cache

    def bwd(douts, cache):
        dx, ds0 = layer.backward(douts[0], cache, douts[1])
        return {"x": dx, "h0": ds0.h, "c0": ds0.c}

    check_module_grads(fwd, bwd, {"x": rng.standard_normal((B, T, D)), "h0": state.h,
                                  "c0": state.c}, layer.parameters(), layer.grads())


def test_step_equals_forward_and_windows_carry_the_state():
    layer = make(2)
    x = np.random.default_rng(2).standard_normal((B, T, D))
    out, final, _ = layer.forward(x)
    state = layer.initial_state(B)
    for t in range(T):
        o, state = layer.step(x[:, t], state)
        np.testing.assert_allclose(o, out[:, t], rtol=0, atol=1e-13)
    for a, b in zip(state, final):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-13)
    first, s1, _ = layer.forward(x[:, :2])
    second, s2, _ = layer.forward(x[:, 2:], s1)
    np.testing.assert_allclose(np.concatenate([first, second], 1), out, rtol=0, atol=1e-13)


def test_config_round_trip_and_bad_sizes():
    layer = make(2, True)
    again = LSTMP.from_config(layer.config())
    assert again.config() == layer.config()
    assert layer.output_size == 2 * P and layer.hidden_size == H
    with pytest.raises(ConfigError, match="proj_size must be an integer in 1..5"):
        LSTMP(D, H, proj_size=H)
    with pytest.raises(ConfigError, match="unknown recurrent config keys"):
        LSTMPConfig.from_dict({**layer.config(), "projection": 2})
    with pytest.raises(ValueError, match=r"expected c0 of shape \(2, 3, 6\)"):
        LSTMP(D, H, 2, proj_size=P).forward(np.zeros((B, T, D)),
                                            LSTMState(np.zeros((2, B, P)), np.zeros((2, B, P))))


# -- PyTorch ----------------------------------------------------------------------------------
@pytest.fixture
def torch():
    return pytest.importorskip("torch")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("num_layers,bidirectional,lengths", [
    (1, False, None), (2, False, [5, 2, 4]), (1, True, [3, 5, 1]), (3, True, None),
    (2, True, [4, 5, 2])])
def test_matches_torch(torch, dtype, num_layers, bidirectional, lengths):
    from torch_compare import assert_matches_torch, random_case

    layer = make(num_layers, bidirectional, dtype)
    x, state, dout, dstate = random_case(layer, np.random.default_rng(3), B, T)
    diffs = assert_matches_torch(layer, x, state, lengths, dout, dstate)
    assert {"dlayers.0.fwd.W_hr", "h", "c", "dh0", "dc0"} <= set(diffs)


def test_converts_both_ways(torch):
    from rnnkit.interop import from_torch, to_torch, torch_state_dict

    layer = make(2, True)
    module = to_torch(layer)
    assert module.proj_size == P and module.weight_hr_l1_reverse.shape == (P, H)
    assert list(torch_state_dict(layer)) == list(module.state_dict())
    back = from_torch(module)
    assert isinstance(back, LSTMP) and back.config()["proj_size"] == P
    for k, v in layer.parameters().items():
        np.testing.assert_array_equal(back.parameters()[k], v)
    theirs = torch.nn.LSTM(D, H, 2, proj_size=P, batch_first=True, dtype=torch.float64)
    ours = from_torch(theirs)
    x = np.random.default_rng(4).standard_normal((B, T, D))
    out, _, _ = ours.forward(x)
    np.testing.assert_allclose(out, theirs(torch.from_numpy(x))[0].detach().numpy(), atol=1e-12)
