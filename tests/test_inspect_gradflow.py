"""Gradient flow through time: dL/dh_t (and the LSTM's dL/dc_t) reported by the layers' backward
hooks, against finite differences and PyTorch autograd; a hooked layer computes what a plain
one does; the vanishing gradient of the vanilla RNN against the LSTM."""

import numpy as np
import pytest

from rnnkit.inspect.gradflow import (
    compare_cells,
    format_table,
    gradient_flow,
    model_gradient_flow,
    recording,
)
from rnnkit.inspect.models import recurrent_layers
from rnnkit.nn.cells import gru as gru_cell
from rnnkit.nn.cells import rnn as rnn_cell
from rnnkit.nn.cells.lstm import LSTMState
from rnnkit.nn.recurrent import make_recurrent
from rnnkit.tasks.lm.model import LanguageModel, LMConfig

CASES = [
    ("rnn", {}),
    ("rnn", {"nonlinearity": "relu"}),
    ("gru", {}),
    ("gru", {"reset_after": False}),
    ("lstm", {}),
    ("lstm", {"peephole": True}),
]


def _layer(cell, opts, L=2, bidirectional=False, seed=0):
    layer = make_recurrent(cell, 3, 4, L, bidirectional=bidirectional, dtype="float64",
                           init="uniform", init_scale=0.6, rng=seed, **opts)
    if opts.get("peephole"):
        rng = np.random.default_rng(seed + 7)
        for row in layer.dirs:
            for unit in row:
                for k in ("p_i", "p_f", "p_o"):
                    unit.param[k][...] = rng.uniform(-0.5, 0.5, 4)
    return layer


def _state_like(layer, B, rng):
    s = layer.initial_state(B)
    if layer.cell == "lstm":
        return LSTMState(rng.standard_normal(s.h.shape), rng.standard_normal(s.c.shape))
    return rng.standard_normal(s.shape)


def _records(layer, x, h0, dout, lengths=None, dT=None):
    """Forward and backward with a backward hook: ``(out, final, dx, dstate0, grads, records)``
    (the layer's parameter gradients are zeroed first)."""
    layer.zero_grad()
    with recording(layer) as found:
        out, final, cache = layer.forward(x, h0, lengths)
        dx, ds0 = layer.backward(dout, cache, dT)
    assert len(found) == 1 and layer._hooks == ()  # removed on exit
    grads = {k: g.copy() for k, g in layer.grads().items()}
    return out, final, dx, ds0, grads, found[0][1]


def _same(a, b):
    for u, v in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,)):
        np.testing.assert_allclose(u, v, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("cell,opts", CASES)
def test_hooked_layer_computes_what_the_plain_layer_does(cell, opts, bidirectional):
    """With a backward hook the stack runs its cells one step at a time: the same outputs,
    states and gradients (up to rounding), and no change to the layer once the hook is gone."""
    rng = np.random.default_rng(1)
    layer = _layer(cell, opts, bidirectional=bidirectional)
    B, T = 3, 5
    x = rng.standard_normal((B, T, 3))
    lengths = [5, 3, 1]
    h0 = _state_like(layer, B, rng)
    dT = _state_like(layer, B, rng)
    layer.zero_grad()
    out, final, cache = layer.forward(x, h0, lengths)
    dout = rng.standard_normal(out.shape)
    dx, ds0 = layer.backward(dout, cache, dT)
    grads = {k: g.copy() for k, g in layer.grads().items()}
    out2, final2, dx2, ds02, grads2, records = _records(layer, x, h0, dout, lengths, dT)
    for a, b in ((out2, out), (final2, final), (dx2, dx), (ds02, ds0)):
        _same(a, b)
    for k in grads:
        _same(grads2[k], grads[k])
    assert "steps" not in layer.forward(x, h0, lengths)[2]["layers"][0]["dirs"][0]
    assert len(records) == 2 and len(records[0]) == (2 if bidirectional else 1)
    assert records[0][0]["h"].shape == (T, B, 4)
    assert set(records[0][0]) == ({"h", "c"} if cell == "lstm" else {"h"})


def _sig(a):
    return 1 / (1 + np.exp(-a))


def _lstm_step(xp, state, p):
    """The textbook LSTM step."""
    h, c = state
    H = h.shape[-1]
    a = h @ p["W_h"] + xp
    peep = {k: p.get(k, np.zeros(H)) for k in ("p_i", "p_f", "p_o")}
    i = _sig(a[:, :H] + peep["p_i"] * c)
    f = _sig(a[:, H : 2 * H] + peep["p_f"] * c)
    c = f * c + i * np.tanh(a[:, 2 * H : 3 * H])
    o = _sig(a[:, 3 * H :] + peep["p_o"] * c)
    return LSTMState(o * np.tanh(c), c)


def _run_perturbed(layer, x, h0, where=None, v=None, vc=None):
    """Step the stack by hand (per layer, so a perturbation of layer l at step t also reaches
    layer l+1 at step t); add ``v`` to h_t (``vc`` to c_t, in the state passed to step t + 1)
    of layer ``where = (l, t)``."""
    cfg = layer.cfg
    T = x.shape[1]
    state = [(h0.h[k], h0.c[k]) if cfg.cell == "lstm" else h0[k] for k in range(cfg.num_layers)]
    outs = []
    for t in range(T):
        inp = x[:, t]
        for li in range(cfg.num_layers):
            p = layer.dirs[li][0].param
            xp = inp @ p["W_x"] + p["b"]
            if cfg.cell == "rnn":
                s = rnn_cell.step(xp, state[li].copy(), p, nonlinearity=cfg.nonlinearity)
            elif cfg.cell == "gru":
                s = gru_cell.step(xp, state[li].copy(), p, reset_after=cfg.reset_after)
            else:
                s = _lstm_step(xp, state[li], p)
            if where == (li, t):
                s = LSTMState(s.h + v, s.c + vc) if cfg.cell == "lstm" else s + v
            state[li] = s
            inp = s[0] if cfg.cell == "lstm" else s
        outs.append(inp)
    return np.stack(outs, axis=1)  # (B, T, H)


@pytest.mark.parametrize("loss", ["last", "sum"])
@pytest.mark.parametrize("cell,opts", CASES)
def test_dh_per_step_against_finite_differences(cell, opts, loss):
    rng = np.random.default_rng(2)
    layer = _layer(cell, opts)
    B, T = 2, 6
    x = rng.standard_normal((B, T, 3))
    h0 = _state_like(layer, B, rng)
    dout = np.zeros((B, T, 4))
    if loss == "last":
        dout[:, -1] = rng.standard_normal((B, 4))
    else:
        dout[...] = rng.standard_normal(dout.shape)
    records = _records(layer, x, h0, dout)[-1]

    def L(**kw):
        return float((_run_perturbed(layer, x, h0, **kw) * dout).sum())

    eps = 1e-6
    for li in range(2):
        for t in range(T):
            v = rng.standard_normal((B, 4))
            vc = rng.standard_normal((B, 4)) if cell == "lstm" else None
            zero = None if vc is None else np.zeros_like(vc)
            num = (L(where=(li, t), v=eps * v, vc=zero) - L(where=(li, t), v=-eps * v, vc=zero))
            ana = float((records[li][0]["h"][t] * v).sum())
            assert abs(num / (2 * eps) - ana) <= 1e-6 * max(1.0, abs(ana)), (li, t)
            if cell == "lstm":
                zero = np.zeros_like(v)
                num = L(where=(li, t), v=zero, vc=eps * vc) - L(where=(li, t), v=zero,
                                                                  vc=-eps * vc)
                ana = float((records[li][0]["c"][t] * vc).sum())
                assert abs(num / (2 * eps) - ana) <= 1e-6 * max(1.0, abs(ana)), (li, t, "c")


def _torch_lstm_step(torch, m, x, state):
    if state is None:
        z = torch.zeros(x.shape[0], m.hidden_size, dtype=x.dtype)
        state = (z, z)
    h, c = state
    a = x @ m.weight_ih_l0.T + m.bias_ih_l0 + h @ m.weight_hh_l0.T + m.bias_hh_l0
    i, f, g, o = a.chunk(4, dim=1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_dh_per_step_against_torch_autograd(cell):
    torch = pytest.importorskip("torch")
    from rnnkit.interop import to_torch

    rng = np.random.default_rng(3)
    layer = make_recurrent(cell, 3, 5, 2, dtype="float64", rng=0)
    # One single-layer torch module per layer, chained by hand, so that the state tensor of
    # layer 0 is also the input of layer 1 and its .grad is the total dL/dh_t.
    mods = []
    for li, D in enumerate((3, 5)):
        one = make_recurrent(cell, D, 5, 1, dtype="float64")
        one.load_state_dict({k.replace(f"layers.{li}.", "layers.0."): v for k, v in
                             layer.parameters().items() if k.startswith(f"layers.{li}.")})
        mods.append(to_torch(one))
    B, T = 2, 7
    x = rng.standard_normal((B, T, 3))
    u = rng.standard_normal((B, 5))
    up = np.zeros((B, T, 5))
    up[:, -1] = u
    flow = gradient_flow(layer, x, upstream=up)
    states = [[None] * T for _ in range(2)]
    carried = [[None] * T for _ in range(2)]
    prev = [None, None]
    for t in range(T):
        inp = torch.from_numpy(x[:, t : t + 1])
        for li, m in enumerate(mods):
            if cell == "lstm":  # by hand: torch.nn.LSTM's returned c_n is not the c behind h_n
                h, c = _torch_lstm_step(torch, m, inp[:, 0], prev[li])
                # dL/dc_t passed back along the cell state: a zero added to the c passed on
                zc = torch.zeros_like(c, requires_grad=True)
                s = (h, c + zc)
                h.retain_grad()
                carried[li][t] = zc
            else:
                _, s = m(inp, prev[li]) if prev[li] is not None else m(inp)
                s.retain_grad()
            states[li][t] = prev[li] = s
            inp = s[0][:, None] if cell == "lstm" else s.transpose(0, 1)
    (inp[:, 0] * torch.from_numpy(u)).sum().backward()
    for li in range(2):
        for t in range(T):
            s = states[li][t]
            h_t = s[0] if cell == "lstm" else s
            np.testing.assert_allclose(flow.h[li, 0, t], float(h_t.grad.norm()), rtol=1e-10)
            if cell == "lstm":
                want = carried[li][t].grad
                want = 0.0 if want is None else float(want.norm())  # None: the last step
                np.testing.assert_allclose(flow.c[li, 0, t], want, rtol=1e-10, atol=1e-300)


def test_language_model_last_step_loss_against_finite_differences():
    from rnnkit.nn.losses import softmax_cross_entropy
    from rnnkit.tasks.lm.inference import inspect_loss

    cfg = LMConfig(vocab_size=7, cell="lstm", embed_size=4, hidden_size=5, num_layers=1,
                   dtype="float64")
    model = LanguageModel(cfg, rng=0)
    rng = np.random.default_rng(4)
    ids = rng.integers(0, 7, (2, 6))
    targets = rng.integers(0, 7, (2, 6))
    before = {k: g.copy() for k, g in model.grads().items()}
    model.grads()["out.W"][...] = 1.5  # must survive
    flows = model_gradient_flow(model, (ids, targets), inspect_loss, loss="last")
    assert model.grads()["out.W"][0, 0] == 1.5 and set(flows) == {"rnn"}
    model.grads()["out.W"][...] = before["out.W"]
    flow = flows["rnn"]

    def loss_after(t, dh):
        state = model.initial_state(2)
        for s in range(6):
            _, state = model.step(ids[:, s], state)
            if s == t:
                state = LSTMState(state.h + dh, state.c)
        logits = state.h[-1] @ model.out.param["W"] + model.out.param["b"]
        return softmax_cross_entropy(logits, targets[:, -1])[0]

    eps = 1e-6
    for t in range(6):
        # the norm from the gradient's own direction: ||g|| = d L(h + eps g/||g||) / d eps
        g = np.zeros((1, 2, 5))
        for b in range(2):
            for j in range(5):
                e = np.zeros((1, 2, 5))
                e[0, b, j] = eps
                g[0, b, j] = (loss_after(t, e) - loss_after(t, -e)) / (2 * eps)
        np.testing.assert_allclose(flow.h[0, 0, t], np.linalg.norm(g), rtol=1e-6)


def test_rnn_gradient_vanishes_and_lstm_gradient_does_not():
    flows = compare_cells(("rnn", "lstm", ("lstm fb3", "lstm", {"forget_bias": 3.0})),
                          hidden_size=32, length=100, batch=8, seed=0)
    rnn, lstm, lstm3 = (flows[k].decay() for k in ("rnn", "lstm", "lstm fb3"))
    assert rnn < 1e-3
    assert lstm > 100 * rnn
    assert lstm3 > 0.1
    table = format_table(flows, every=25)
    lines = table.splitlines()
    assert "rnn h" in lines[0] and "lstm fb3 c" in lines[0]
    assert [ln.split()[0] for ln in lines[1:]] == ["1", "26", "51", "76", "100"]


def test_recurrent_layers_are_found_inside_any_model():
    model = LanguageModel(LMConfig(vocab_size=5, embed_size=3, hidden_size=3), rng=0)
    found = recurrent_layers(model)
    assert [n for n, _ in found] == ["rnn"] and found[0][1] is model.rnn
    layer = make_recurrent("gru", 2, 3)
    assert recurrent_layers(layer) == [("gru", layer)]


def test_bidirectional_with_lengths_and_unknown_kinds():
    from rnnkit.errors import ConfigError

    gru = make_recurrent("gru", 3, 4, 2, bidirectional=True, dtype="float64", rng=0)
    x = np.random.default_rng(5).standard_normal((2, 6, 3))
    flow = gradient_flow(gru, x, lengths=[6, 3], loss="sum")
    assert flow.h.shape == (2, 2, 6) and flow.c is None and np.all(flow.h > 0)
    with pytest.raises(ConfigError, match="loss must be"):
        gradient_flow(gru, x, loss="mean")
