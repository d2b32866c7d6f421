"""minGRU and minLSTM (rnnkit.nn.minrnn): the log-space scan against a step-by-step loop
(long windows where the plain product underflows), gradient checks through the scan,
truncated BPTT, lengths and bidirectional stacks."""

from __future__ import annotations

import numpy as np
import pytest
from gradcheck import check_module_grads

from rnnkit.nn.minrnn import GATES, MinGRU, MinLSTM, MinRNNConfig, forward, log_coefficients, step

CELLS = [pytest.param(MinGRU, id="mingru"), pytest.param(MinLSTM, id="minlstm")]
B, T, D, H = 3, 6, 4, 5


def make(klass, num_layers=1, bidirectional=False, dtype="float64", seed=0):
    layer = klass(D, H, num_layers, bidirectional=bidirectional, dtype=dtype, rng=seed)
    rng = np.random.default_rng(seed + 100)
    for p in layer.parameters().values():
        p[...] = rng.uniform(-0.8, 0.8, p.shape)
    return layer


@pytest.mark.parametrize("cell", ["mingru", "minlstm"])
@pytest.mark.parametrize("steps", [50, 2000])
def test_scan_equals_the_step_loop_where_the_product_underflows(cell, steps, kernels):
    rng = np.random.default_rng(0)
    G = len(GATES[cell])
    xp = rng.standard_normal((steps, 2, G * H))
    xp[..., :H] += 0.5 if cell == "mingru" else -0.5  # a_t around 0.3-0.4: fast decay
    h0 = rng.uniform(-1, 2, (2, H))
    Hs, cache = forward(xp.copy(), h0, cell)
    h, loop = h0, [h0]
    for t in range(steps):
        h = step(xp[t], h, cell)
        loop.append(h)
    np.testing.assert_allclose(Hs, np.stack(loop), rtol=1e-12, atol=1e-12)
    if steps == 2000:  # the naive product a_1 ... a_T is 0 in float64 here
        log_a, _ = log_coefficients(xp, cell)
        assert np.prod(np.exp(log_a), axis=0).min() == 0.0
        assert (Hs[-1] > 0.01).all()


def _gradcheck(layer, x, h0, lengths=None, dropout_seed=None):
    def fwd(x, h0):
        rng = None if dropout_seed is None else np.random.default_rng(dropout_seed)
        out, hT, cache = layer.forward(x, h0, lengths, rng=rng)
        return (out, hT), cache

    def bwd(douts, cache):
        dx, dh0 = layer.backward(douts[0], cache, douts[1])
        return {"x": dx, "h0": dh0}

    return check_module_grads(fwd, bwd, {"x": x, "h0": h0}, layer.parameters(), layer.grads())


@pytest.mark.parametrize("klass", CELLS)
@pytest.mark.parametrize("num_layers,bidirectional,lengths", [
    (1, False, None), (2, False, [6, 2, 4]), (1, True, [3, 6, 1]), (2, True, None)])
def test_gradcheck_through_the_scan(klass, num_layers, bidirectional, lengths, kernels):
    layer = make(klass, num_layers, bidirectional)
    rng = np.random.default_rng(1)
    h0 = rng.uniform(-1.5, 1.5, (num_layers * layer.cfg.dirs, B, H))
    errors = _gradcheck(layer, 2 * rng.standard_normal((B, T, D)), h0, lengths)
    assert "h0" in errors and "layers.0.fwd.W_x" in errors


@pytest.mark.parametrize("locked", [False, True], ids=["unlocked", "locked"])
@pytest.mark.parametrize("klass", CELLS)
def test_gradcheck_from_the_zero_state_with_dropout(klass, locked, kernels):
    layer = make(klass, 2)
    layer.cfg.dropout, layer.cfg.locked = 0.3, locked
    x = np.random.default_rng(2).standard_normal((B, T, D))
    _gradcheck(layer, x, np.zeros((2, B, H)), dropout_seed=4)


@pytest.mark.parametrize("klass", CELLS)
def test_windows_carry_the_state_and_step_equals_forward(klass):
    layer = make(klass, 2)
    x = np.random.default_rng(3).standard_normal((B, 12, D))
    out, final, _ = layer.forward(x)
    a, s, _ = layer.forward(x[:, :5])
    b, s, _ = layer.forward(x[:, 5:], s)
    np.testing.assert_allclose(np.concatenate([a, b], 1), out, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(s, final, rtol=1e-13, atol=1e-13)
    h = layer.initial_state(B)
    for t in range(12):
        o, h = layer.step(x[:, t], h)
        np.testing.assert_allclose(o, out[:, t], rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("klass", CELLS)
def test_lengths_equal_running_each_row_alone(klass, kernels):
    layer = make(klass, 2, bidirectional=True)
    x = np.random.default_rng(4).standard_normal((B, T, D))
    lengths = [6, 2, 4]
    out, final, _ = layer.forward(x, lengths=lengths)
    for row, n in enumerate(lengths):
        alone, f1, _ = layer.forward(x[row : row + 1, :n])
        np.testing.assert_allclose(out[row, :n], alone[0], rtol=1e-12, atol=1e-13)
        assert not out[row, n:].any()
        np.testing.assert_allclose(final[:, row], f1[:, 0], rtol=1e-12, atol=1e-13)


def test_config_and_bad_state():
    layer = make(MinLSTM, 2, True)
    again = MinLSTM.from_config(layer.config())
    assert again.config() == layer.config() and isinstance(again, MinLSTM)
    with pytest.raises(ValueError, match="unknown recurrent config keys"):
        MinRNNConfig.from_dict({**layer.config(), "W_h": 1})
    with pytest.raises(ValueError, match="weight_drop acts on recurrent weights"):
        MinGRU(D, H, weight_drop=0.5)
    with pytest.raises(ValueError, match="cell must be 'mingru' or 'minlstm'"):
        MinRNNConfig("gru", 2, 3)


@pytest.mark.parametrize("klass", CELLS)
def test_float32_is_close_to_float64_and_finite_at_extremes(klass, kernels):
    layer64 = make(klass, 2)
    layer32 = make(klass, 2, dtype="float32")
    x = np.random.default_rng(5).standard_normal((B, 64, D))
    out64, _, _ = layer64.forward(x)
    out32, _, _ = layer32.forward(x.astype(np.float32))
    np.testing.assert_allclose(out32, out64, rtol=1e-4, atol=1e-5)
    huge, _, cache = layer64.forward(1e4 * x)
    dx, _ = layer64.backward(np.ones_like(huge), cache)
    assert np.isfinite(huge).all() and np.isfinite(dx).all()


def _both_backends(layer, x, h0, dout, dhT, monkeypatch, backends=("numpy", "numba")):
    runs = []
    for backend in backends:
        monkeypatch.setenv("RNNKIT_KERNELS", backend)
        out, hT, cache = layer.forward(x.astype(layer.cfg.dtype), h0.astype(layer.cfg.dtype),
                                       [400, 123, 7])
        layer.zero_grad()
        dx, dh0 = layer.backward(dout.astype(layer.cfg.dtype), cache,
                                 dhT.astype(layer.cfg.dtype))
        runs.append([out, hT, dx, dh0, *(g.copy() for g in layer.grads().values())])
    return runs


def _max_rel_error(got, want):
    return max(float(np.abs(g.astype(np.float64) - w).max()) / max(float(np.abs(w).max()), 1.0)
               for g, w in zip(got, want))


@pytest.mark.parametrize("klass", CELLS)
def test_compiled_recurrence_equals_the_log_space_scan(klass, monkeypatch):
    """The compiled pass against the NumPy reference: outputs, final states and every
    gradient, stacked, bidirectional and with lengths, over a window where the plain product
    of the a_t underflows.  float64: the two agree to 1e-12.  float32: both are held to the
    float64 result, and the compiled pass is the closer one (the log-space scan carries
    ``A_t``, a sum over 400 steps, whose rounding grows with the window)."""
    pytest.importorskip("numba")
    rng = np.random.default_rng(7)
    x, h0 = rng.standard_normal((B, 400, D)), rng.uniform(0, 1, (4, B, H))
    dout, dhT = rng.standard_normal((B, 400, 2 * H)), rng.standard_normal((4, B, H))
    layer64 = make(klass, num_layers=2, bidirectional=True, dtype="float64")
    ref, compiled = _both_backends(layer64, x, h0, dout, dhT, monkeypatch)
    assert _max_rel_error(compiled, ref) < 1e-12
    layer32 = make(klass, num_layers=2, bidirectional=True, dtype="float32")
    truth = _both_backends(layer64.load_state_dict(layer32.state_dict()) or layer64, x, h0,
                           dout, dhT, monkeypatch, ("numpy",))[0]
    ref32, compiled32 = _both_backends(layer32, x, h0, dout, dhT, monkeypatch)
    assert all(a.dtype == np.float32 for a in compiled32)
    assert _max_rel_error(compiled32, truth) < 1e-5  # weight gradients sum 1,200 steps
    assert _max_rel_error(compiled32, truth) <= _max_rel_error(ref32, truth)
