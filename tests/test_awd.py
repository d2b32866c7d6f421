"""AWD-LSTM regularisation (Merity, Keskar & Socher 2018) in rnnkit.nn: weight drop
(DropConnect on every ``W_h``), locked dropout and embedding dropout.

Each is checked twice: the float64 gradient check goes through it in training mode (a fresh
Generator of one seed per forward draws the same masks), and the mask-semantics tests pin what
each mask is: a locked mask is the same at every step, a weight-drop mask is one matrix for the
whole forward call and a new one for the next call, and everything is off in ``eval()``.
"""

from __future__ import annotations

import numpy as np
import pytest
from gradcheck import check_module_grads
from test_recurrent import LENGTHS, B, D, T, gradcheck_layer, random_state
from test_recurrent import make_layer as _make_layer

from conftest import CELLS
from rnnkit.errors import ConfigError
from rnnkit.nn.layers import Embedding
from rnnkit.nn.recurrent import Recurrent, RecurrentConfig


def make_layer(cell, opts, num_layers=1, bidirectional=False, *, dropout=0.0, **awd):
    return _make_layer(cell, {**opts, **awd}, num_layers, bidirectional, dropout=dropout)


# -- weight drop --------------------------------------------------------------------------------
@pytest.mark.parametrize("locked", [False, True], ids=["unlocked", "locked"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("cell, opts", CELLS)
def test_gradcheck_weight_drop_and_locked(cell, opts, bidirectional, locked):
    rng = np.random.default_rng(11)
    layer = make_layer(cell, opts, 2, bidirectional, dropout=0.4,
                       weight_drop=0.5, locked=locked)
    x = rng.standard_normal((B, T, D))
    errors = gradcheck_layer(layer, x, random_state(layer, B, rng), LENGTHS, dropout_seed=3)
    assert set(errors) >= {"x", "h0", *layer.parameters()}


def _masks(layer, cache):
    return [m for lc in cache["layers"] for m in lc["wdrop"]]


@pytest.mark.parametrize("cell, opts", CELLS[::2])
def test_weight_drop_mask_fixed_within_a_call_fresh_across_calls(cell, opts):
    x = np.random.default_rng(0).standard_normal((B, T, D))
    layer = make_layer(cell, opts, 2, True, weight_drop=0.5)
    rng = np.random.default_rng(1)
    out, state, cache = layer.forward(x, lengths=LENGTHS, rng=rng)
    masks = _masks(layer, cache)
    assert len(masks) == 4 and all(m.shape == u.param["W_h"].shape
                                   for m, u in zip(masks, [u for r in layer.dirs for u in r]))
    for m in masks:  # entries 0 or 1 / (1 - p), some of each
        assert set(np.unique(m)) == {0.0, 2.0}
    # fixed within the call: the same numbers as a plain layer whose W_h is W_h * M at every step
    plain = make_layer(cell, opts, 2, True)
    plain.load_state_dict(layer.state_dict())
    for unit, m in zip([u for r in plain.dirs for u in r], masks):
        unit.param["W_h"] *= m
    ref, ref_state, _ = plain.forward(x, lengths=LENGTHS)
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-13)
    # fresh across calls: the next call (next batch) draws other masks from the same Generator
    _, _, cache2 = layer.forward(x, lengths=LENGTHS, rng=rng)
    for m, m2 in zip(masks, _masks(layer, cache2)):
        assert not np.array_equal(m, m2)
    # the parameters themselves are never changed by the mask
    np.testing.assert_array_equal(layer.state_dict()["layers.0.fwd.W_h"],
                                  make_layer(cell, opts, 2, True).state_dict()["layers.0.fwd.W_h"])


@pytest.mark.parametrize("cell, opts", CELLS[::2])
def test_weight_drop_gradient_is_masked(cell, opts):
    """Where the mask is 0 the entry of W_h took no part, so its gradient is exactly 0."""
    rng = np.random.default_rng(4)
    layer = make_layer(cell, opts, 1, weight_drop=0.5)
    out, _, cache = layer.forward(rng.standard_normal((B, T, D)), rng=np.random.default_rng(2))
    layer.backward(rng.standard_normal(out.shape), cache)
    m = cache["layers"][0]["wdrop"][0]
    g = layer.grads()["layers.0.fwd.W_h"]
    assert np.all(g[m == 0] == 0) and np.all(g[m != 0] != 0)


@pytest.mark.parametrize("cell, opts", CELLS[::2])
def test_weight_drop_and_locked_off_in_eval(cell, opts):
    x = np.random.default_rng(0).standard_normal((B, T, D))
    plain = make_layer(cell, opts, 2, True)
    reg = make_layer(cell, opts, 2, True, dropout=0.5, weight_drop=0.5, locked=True)
    reg.load_state_dict(plain.state_dict())
    ref = plain.forward(x, lengths=LENGTHS)[0]
    assert not np.allclose(reg.forward(x, lengths=LENGTHS, rng=np.random.default_rng(0))[0], ref)
    reg.eval()
    out, _, cache = reg.forward(x, lengths=LENGTHS, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(out, ref)
    assert all(m is None for m in _masks(reg, cache))


# -- locked dropout between layers --------------------------------------------------------------
@pytest.mark.parametrize("cell, opts", CELLS[::2])
def test_locked_mask_identical_at_every_step(cell, opts):
    x = np.random.default_rng(0).standard_normal((B, 6, D))
    layer = make_layer(cell, opts, 3, True, dropout=0.5, locked=True)
    _, _, cache = layer.forward(x, rng=np.random.default_rng(1))
    for lc in cache["layers"][1:]:
        drop = lc["drop"]
        assert drop.shape == (1, B, 2 * layer.hidden_size)
        zero = lc["inp"] == 0  # (T, B, 2H): the layer's dropped input
        assert zero.any() and (~zero).any()
        for t in range(1, zero.shape[0]):
            np.testing.assert_array_equal(zero[t], zero[0])
    # unlocked: a mask per step, so the zeros move
    free = make_layer(cell, opts, 2, True, dropout=0.5)
    _, _, cache = free.forward(x, rng=np.random.default_rng(1))
    zero = cache["layers"][1]["inp"] == 0
    assert any(not np.array_equal(zero[t], zero[0]) for t in range(1, zero.shape[0]))


def test_config_defaults_and_checks():
    old = {"cell": "lstm", "input_size": 3, "hidden_size": 2}  # a checkpoint before the options
    cfg = RecurrentConfig.from_dict(old)
    assert cfg.weight_drop == 0.0 and cfg.locked is False
    layer = Recurrent.from_config({**old, "weight_drop": 0.3, "locked": True})
    assert layer.cfg.weight_drop == 0.3 and layer.cfg.locked
    with pytest.raises(ConfigError, match="weight_drop must be in"):
        RecurrentConfig(cell="gru", input_size=3, hidden_size=2, weight_drop=1.0)


# -- embedding dropout --------------------------------------------------------------------------
def test_gradcheck_embedding_dropout():
    emb = Embedding(7, 3, dtype="float64", rng=0)
    ids = np.array([[1, 2, 1, 5], [5, 0, 2, 1]])

    def fwd():
        return emb.forward(ids, drop=0.5, rng=np.random.default_rng(3))

    def bwd(dy, cache):
        emb.backward(dy, cache)
        return {}

    check_module_grads(fwd, bwd, {}, emb.parameters(), emb.grads())


def test_embedding_dropout_drops_whole_words():
    V, E = 50, 4
    emb = Embedding(V, E, dtype="float64", rng=0)
    ids = np.random.default_rng(1).integers(0, V, (8, 30))
    rng = np.random.default_rng(2)
    y, (cached_ids, s) = emb.forward(ids, drop=0.5, rng=rng)
    ref = emb.param["W"][ids]
    assert s.shape == (V,) and set(np.unique(s)) == {0.0, 2.0}
    np.testing.assert_array_equal(y, ref * s[ids][..., None])
    dropped = np.unique(ids[s[ids] == 0])
    kept = np.unique(ids[s[ids] != 0])
    assert len(dropped) and len(kept)
    for v in dropped:  # every occurrence of a dropped word is zero, wherever it is
        assert np.all(y[ids == v] == 0)
    for v in kept:
        np.testing.assert_array_equal(y[ids == v], 2 * ref[ids == v])
    # the next call (batch) draws another mask; eval() is the plain lookup
    _, (_, s2) = emb.forward(ids, drop=0.5, rng=rng)
    assert not np.array_equal(s, s2)
    emb.eval()
    y, cache = emb.forward(ids, drop=0.5, rng=rng)
    np.testing.assert_array_equal(y, ref)
    assert cache is not None and not isinstance(cache, tuple)


# -- the language model: every regulariser at once, through the model loss ---------------------
def _lm(cell="lstm", tie=False, locked=False, **kw):
    from rnnkit.tasks.lm.model import LanguageModel, LMConfig

    cfg = LMConfig(vocab_size=11, cell=cell, embed_size=4, hidden_size=4, num_layers=2,
                   tie_weights=tie, locked=locked, dtype="float64", **kw)
    lm = LanguageModel(cfg, rng=0)
    rng = np.random.default_rng(5)
    for p in lm.parameters().values():
        p[...] = rng.uniform(-0.8, 0.8, p.shape)
    return lm


AWD = dict(dropout=0.3, dropout_input=0.2, dropout_output=0.4, dropout_embed=0.3,
           weight_drop=0.5, ar=2.0, tar=1.0)


@pytest.mark.parametrize("cell, tie, locked, extra", [
    ("lstm", True, True, {}), ("lstm", False, False, {}), ("gru", False, True, {}),
    ("rnn", True, False, {}), ("lstm", False, True, {"proj_size": 3}),
    ("gru", False, True, {"layer_norm": True}), ("lstm", False, False, {"adaptive_softmax": [4]})])
def test_lm_objective_gradient_by_finite_differences(cell, tie, locked, extra):
    """The gradient ``loss(..., backward=True)`` accumulates is that of the objective
    (cross-entropy + AR + TAR) it returns with ``objective=True``, dropouts and weight drop
    included (each forward redraws the same masks from a fresh Generator)."""
    from gradcheck import numeric_grad, rel_error

    lm = _lm(cell, tie, locked, **AWD, **extra)
    data = np.random.default_rng(1)
    ids, targets = data.integers(0, 11, (3, 5)), data.integers(0, 11, (3, 5))
    h0 = lm.initial_state(3)

    def objective(backward=False):
        return lm.loss(ids, targets, h0, rng=np.random.default_rng(9), backward=backward,
                       objective=True)[0]

    lm.zero_grad()
    value = objective(backward=True)
    plain = lm.loss(ids, targets, h0, rng=np.random.default_rng(9), backward=False)[0]
    assert value > plain  # the penalties are in the objective, not in the reported loss
    eps = 1e-6
    for name, p in lm.parameters().items():
        num = numeric_grad(objective, p, eps)
        err = rel_error(num, lm.grads()[name])
        assert err <= 1e-6, f"{name}: relative error {err:.2e}"


def test_lm_penalty_values_and_eval():
    from rnnkit.nn.penalties import activation_penalty, temporal_penalty

    lm = _lm(ar=2.0, tar=1.0)  # no dropout: AR and TAR see the same h
    ids = np.random.default_rng(1).integers(0, 11, (3, 5))
    logits, _, cache = lm.forward(ids, rng=np.random.default_rng(0))
    h = cache[4]
    value, d_drop, d_raw = lm.penalty(cache)
    assert value == pytest.approx(2.0 * np.mean(h ** 2) + np.mean((h[:, 1:] - h[:, :-1]) ** 2))
    np.testing.assert_allclose(d_drop, activation_penalty(h, 2.0)[1])
    np.testing.assert_allclose(d_raw, temporal_penalty(h, 1.0)[1])
    full = lm.loss(ids, ids, backward=False, objective=True)[0]
    ce = lm.loss(ids, ids, backward=False)[0]
    assert full == pytest.approx(ce + value)
    lm.eval()  # no penalty, no masks: the objective is the loss
    assert lm.loss(ids, ids, backward=False, objective=True)[0] == ce


def test_lm_locked_masks_and_eval():
    lm = _lm(locked=True, dropout=0.5, dropout_embed=0.5, weight_drop=0.5)
    ids = np.random.default_rng(1).integers(0, 11, (3, 6))
    _, _, cache = lm.forward(ids, rng=np.random.default_rng(0))
    m_in, m_out = cache[1], cache[3]
    assert m_in.shape == (3, 1, 4) and m_out.shape == (3, 1, 4)  # one mask per row, every step
    assert cache[2]["layers"][1]["drop"].shape == (1, 3, 4)
    assert all(m is not None for lc in cache[2]["layers"] for m in lc["wdrop"])
    plain = _lm()
    lm.eval()
    np.testing.assert_array_equal(lm.forward(ids, rng=np.random.default_rng(0))[0],
                                  plain.forward(ids)[0])


def test_lm_config_old_checkpoints_and_defaults():
    from rnnkit.tasks.lm.model import LMConfig

    old = {"vocab_size": 5, "dropout": 0.25}  # saved before the AWD options
    cfg = LMConfig.from_dict(old)
    assert (cfg.p_input, cfg.p_output, cfg.dropout_embed, cfg.weight_drop, cfg.locked,
            cfg.ar, cfg.tar) == (0.25, 0.25, 0.0, 0.0, False, 0.0, 0.0)
    cfg = LMConfig(vocab_size=5, dropout=0.25, dropout_input=0.0, dropout_output=0.4)
    assert (cfg.p_input, cfg.p_output) == (0.0, 0.4)
    with pytest.raises(ConfigError, match="weight_drop must be in"):
        LMConfig(vocab_size=5, weight_drop=1.5)
    with pytest.raises(ConfigError, match="ar must be >= 0"):
        LMConfig(vocab_size=5, ar=-1.0)
