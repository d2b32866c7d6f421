"""rnnkit.nn.layers: Linear, Embedding and Dropout, forward numbers and gradient checks."""

from __future__ import annotations

import re

import numpy as np
import pytest
from gradcheck import check_module_grads

from rnnkit.nn.layers import Dropout, Embedding, Linear


def _raises(message: str):
    return pytest.raises(ValueError, match=re.escape(message))


# -- Linear -----------------------------------------------------------------------------------
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(3, 4), (2, 3, 4)], ids=["2d", "3d"])
def test_linear_gradcheck(shape, bias):
    rng = np.random.default_rng(0)
    lin = Linear(4, 3, bias=bias, dtype="float64", rng=0)
    for p in lin.parameters().values():
        p[...] = rng.standard_normal(p.shape)

    def fwd(x):
        return lin.forward(x)

    def bwd(dy, x):
        return {"x": lin.backward(dy, x)}

    errors = check_module_grads(fwd, bwd, {"x": rng.standard_normal(shape)},
                                lin.parameters(), lin.grads())
    assert set(errors) == {"x", "W", "b"} if bias else {"x", "W"}


def test_linear_forward_and_dtype():
    rng = np.random.default_rng(1)
    lin = Linear(4, 3, rng=0)
    lin.param["b"][...] = rng.standard_normal(3)
    x = rng.standard_normal((2, 5, 4)).astype(np.float32)
    y, cache = lin.forward(x)
    assert y.dtype == np.float32 and y.shape == (2, 5, 3)
    np.testing.assert_allclose(y, x @ lin.param["W"] + lin.param["b"], rtol=1e-6)
    dx = lin.backward(np.ones_like(y), cache)
    assert dx.dtype == np.float32 and dx.shape == x.shape
    np.testing.assert_allclose(lin.grad["b"], np.full(3, 10.0))


def test_linear_bad_input():
    lin = Linear(3, 2, rng=0)
    with _raises("Linear: expected x of shape (..., 3), got (4, 2)"):
        lin.forward(np.zeros((4, 2)))
    with _raises("Linear: expected x of shape (..., 3), got ()"):
        lin.forward(np.float64(1.0))


# -- Embedding --------------------------------------------------------------------------------
IDS = np.array([[1, 2, 1, 4], [1, 0, 4, 1]])


def test_embedding_gradcheck_with_repeated_ids():
    rng = np.random.default_rng(2)
    emb = Embedding(6, 3, dtype="float64", rng=0)

    def fwd():
        return emb.forward(IDS)

    def bwd(dy, ids):
        emb.backward(dy, ids)
        return {}

    check_module_grads(fwd, bwd, {}, emb.parameters(), emb.grads(), seed=int(rng.integers(99)))


def test_embedding_forward_and_sparse_backward():
    rng = np.random.default_rng(3)
    emb = Embedding(6, 3, dtype="float64", rng=0)
    y, ids = emb.forward(IDS)
    np.testing.assert_array_equal(y, emb.param["W"][IDS])
    dy = rng.standard_normal(y.shape)
    before = rng.standard_normal(emb.grad["W"].shape)
    emb.grad["W"][...] = before
    rows = emb.backward(dy, ids)
    np.testing.assert_array_equal(rows, [0, 1, 2, 4])
    want = before.copy()
    for b in range(IDS.shape[0]):
        for t in range(IDS.shape[1]):
            want[IDS[b, t]] += dy[b, t]
    np.testing.assert_allclose(emb.grad["W"], want, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(emb.grad["W"][1] - before[1],
                               dy[0, 0] + dy[0, 2] + dy[1, 0] + dy[1, 3], rtol=1e-14)
    untouched = [3, 5]
    np.testing.assert_array_equal(emb.grad["W"][untouched], before[untouched])  # bit for bit


def test_embedding_padding_idx():
    rng = np.random.default_rng(4)
    emb = Embedding(5, 3, padding_idx=0, rng=0)
    assert not emb.param["W"][0].any()
    ids = np.array([[2, 0, 0], [0, 1, 2]])
    y, cache = emb.forward(ids)
    assert not y[ids == 0].any()
    emb.backward(rng.standard_normal(y.shape).astype(np.float32), cache)
    assert not emb.grad["W"][0].any()
    assert emb.grad["W"][[1, 2]].all() and not emb.grad["W"][[3, 4]].any()


@pytest.mark.parametrize(
    "ids, message",
    [
        ([[1, -1, 2]], "Embedding: expected ids in 0..4, got values from -1 to 2"),
        ([[1, 5]], "Embedding: expected ids in 0..4, got values from 1 to 5"),
        ([[1.0, 2.0]], "Embedding: expected integer ids, got dtype float64"),
    ],
)
def test_embedding_bad_ids(ids, message):
    with _raises(message):
        Embedding(5, 2, rng=0).forward(np.array(ids))


# -- Dropout ----------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dropout_mask_scale(dtype):
    p = 0.3
    drop = Dropout(p, rng=0)
    x = np.ones((200, 500), dtype)
    y, m = drop.forward(x)
    assert y.dtype == dtype and m.dtype == dtype
    kept = y != 0
    np.testing.assert_allclose(y[kept], 1 / (1 - p), rtol=1e-6)
    assert abs(kept.mean() - (1 - p)) < 0.01  # 1e5 draws: std of the mean is 0.0015
    assert abs(y.mean() - 1.0) < 0.02  # inverted dropout keeps the expectation
    np.testing.assert_array_equal(drop.backward(np.ones_like(y), m), y)


def test_dropout_randomness_is_explicit():
    x = np.ones((4, 50))
    drop = Dropout(0.5, rng=1)
    a, _ = drop.forward(x)
    b, _ = drop.forward(x)
    assert not np.array_equal(a, b)  # the held Generator moves on
    c, _ = drop.forward(x, rng=np.random.default_rng(9))
    d, _ = drop.forward(x, rng=np.random.default_rng(9))
    np.testing.assert_array_equal(c, d)


def test_dropout_eval_and_zero_p_are_identity():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 4))
    dy = rng.standard_normal((3, 4))
    for drop in (Dropout(0.5, rng=0).eval(), Dropout(0.0, rng=0)):
        y, m = drop.forward(x)
        assert m is None
        np.testing.assert_array_equal(y, x)
        np.testing.assert_array_equal(drop.backward(dy, m), dy)


def test_dropout_gradcheck():
    rng = np.random.default_rng(6)
    drop = Dropout(0.4)

    def fwd(x):
        return drop.forward(x, rng=np.random.default_rng(3))

    def bwd(dy, m):
        return {"x": drop.backward(dy, m)}

    check_module_grads(fwd, bwd, {"x": rng.standard_normal((3, 5))})


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5])
def test_dropout_bad_p(p):
    with _raises(f"Dropout: expected p in [0, 1), got {p!r}"):
        Dropout(p)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_one_dropout_for_the_layer_and_the_models(dtype):
    """The Dropout layer, the language model and the seq2seq encoder draw the same mask from the
    same generator state: one implementation (rnnkit.nn.layers.dropout.dropout)."""
    from rnnkit.nn.layers.dropout import dropout, dropout_mask
    from rnnkit.tasks.lm.model import LanguageModel, LMConfig
    from rnnkit.tasks.seq2seq.model import Seq2Seq, Seq2SeqConfig

    p, E = 0.4, 4
    ids = np.random.default_rng(1).integers(1, 7, size=(3, 5))  # (B, T)
    want = dropout_mask((3, 5, E), p, np.random.default_rng(8), dtype)  # (B, T, E)
    assert want.dtype == dtype and set(np.unique(want)) == {0.0, dtype(1 / (1 - p))}

    x = np.ones((3, 5, E), dtype)
    _, m_fn = dropout(x, p, np.random.default_rng(8))
    _, m_layer = Dropout(p).forward(x, rng=np.random.default_rng(8))
    lm = LanguageModel(LMConfig(vocab_size=7, embed_size=E, hidden_size=3, dropout=p,
                                dtype=np.dtype(dtype).name), rng=np.random.default_rng(0))
    m_lm = lm.forward(ids, rng=np.random.default_rng(8))[2][1]  # cache: (emb, m_in, ...)
    s2s = Seq2Seq(Seq2SeqConfig(7, 7, embed_size=E, hidden_size=3,
                                dropout=p, dtype=np.dtype(dtype).name),
                  rng=np.random.default_rng(0))
    m_s2s = s2s._encode(ids, np.full(3, 5), np.random.default_rng(8))[2][1]  # (emb, m_src, ..)
    for m in (m_fn, m_layer, m_lm, m_s2s):
        np.testing.assert_array_equal(m, want)
