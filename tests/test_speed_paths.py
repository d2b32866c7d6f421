"""The fast paths give the same numbers as the plain ones: the in-place, blocked softmax
cross-entropy; the no-grad forward of the recurrent layers (no history kept); the LSTM backward
that works inside its cache; and ``LanguageModel.loss``, which uses all three.

The plain paths are the ones proven by finite differences and against PyTorch elsewhere
(tests/test_losses.py, test_recurrent.py, test_lm.py), so equality with them is enough here.
"""

from __future__ import annotations

import numpy as np
import pytest

import rnnkit.nn.cells.lstm
import rnnkit.nn.losses
from rnnkit.nn.losses import softmax_cross_entropy
from rnnkit.nn.recurrent import make_recurrent
from rnnkit.tasks.lm.model import LanguageModel, LMConfig

CELLS = [
    pytest.param("rnn", {}, id="rnn"),
    pytest.param("gru", {}, id="gru"),
    pytest.param("lstm", {}, id="lstm"),
    pytest.param("lstm", {"peephole": True}, id="lstm-peephole"),
]
DTYPES = [np.float64, np.float32]


# -- softmax cross-entropy ----------------------------------------------------------------------
def _logits(shape, V, dtype, seed=0):
    rng = np.random.default_rng(seed)
    z = (3 * rng.standard_normal((*shape, V))).astype(dtype)
    return z, rng.integers(0, V, shape), rng.random(shape) < 0.7


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("masked", [False, True], ids=["all", "masked"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_cross_entropy_overwrite_gives_the_same_and_reuses_logits(dtype, masked, reduction):
    z, y, mask = _logits((3, 5), 11, dtype)
    m = mask if masked else None
    loss, dz, n = softmax_cross_entropy(z, y, m, reduction)
    work = z.copy()
    loss2, dz2, n2 = softmax_cross_entropy(work, y, m, reduction, overwrite=True)
    assert (loss2, n2) == (loss, n)
    np.testing.assert_array_equal(dz2, dz)
    assert np.shares_memory(dz2, work) and dz2.shape == work.shape
    np.testing.assert_array_equal(work, dz)  # the caller's buffer now holds the gradient


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_without_gradient(dtype):
    z, y, mask = _logits((4, 6), 9, dtype, seed=1)
    for m in (None, mask):
        loss, _, n = softmax_cross_entropy(z, y, m)
        before = z.copy()
        loss2, dz, n2 = softmax_cross_entropy(z, y, m, grad=False)
        assert (loss2, dz, n2) == (loss, None, n)
        np.testing.assert_array_equal(z, before)  # not overwritten unless asked
        work = z.copy()
        loss3, _, _ = softmax_cross_entropy(work, y, m, grad=False, overwrite=True)
        assert loss3 == loss
        # documented state: each row holds exp(z - max z)
        np.testing.assert_array_equal(work, np.exp(z - z.max(-1, keepdims=True)))


def test_cross_entropy_overwrite_leaves_unsuitable_logits_alone():
    z, y, _ = _logits((4, 3), 7, np.float64, seed=2)
    loss, dz, _ = softmax_cross_entropy(z, y)
    for bad in (z.transpose(1, 0, 2), np.asfortranarray(z), np.round(z * 10).astype(np.int64)):
        before = bad.copy()
        yy = y.T if bad.shape[:2] != y.shape else y
        loss2, dz2, _ = softmax_cross_entropy(bad, yy, overwrite=True)
        np.testing.assert_array_equal(bad, before)
        assert not np.shares_memory(dz2, bad)
        if bad.dtype == z.dtype:
            assert loss2 == pytest.approx(loss, rel=1e-14)
    frozen = z.copy()
    frozen.flags.writeable = False
    loss3, dz3, _ = softmax_cross_entropy(frozen, y, overwrite=True)
    assert loss3 == loss and not np.shares_memory(dz3, frozen)
    np.testing.assert_array_equal(dz3, dz)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_blocks_of_rows_change_nothing(dtype, monkeypatch):
    """Rows go in cache-sized blocks; blocks of 1, 2 and 3 rows give the one-block answer."""
    z, y, mask = _logits((5, 7), 13, dtype, seed=3)
    for m in (None, mask):
        loss, dz, n = softmax_cross_entropy(z, y, m)
        for rows in (1, 2, 3):
            monkeypatch.setattr(rnnkit.nn.losses, "_BLOCK", 13 * rows)
            loss2, dz2, n2 = softmax_cross_entropy(z.copy(), y, m, overwrite=True)
            assert n2 == n and loss2 == pytest.approx(loss, rel=1e-6 if dtype == np.float32
                                                      else 1e-14)
            np.testing.assert_array_equal(dz2, dz)  # each row's arithmetic is the same
            monkeypatch.undo()


# -- recurrent layers ---------------------------------------------------------------------------
def _layer(cell, opts, dtype, bidirectional=False, seed=0):
    layer = make_recurrent(cell, 3, 4, 2, bidirectional=bidirectional, dtype=dtype, rng=seed,
                           **opts)
    rng = np.random.default_rng(seed + 1)
    for p in layer.parameters().values():
        p[...] = rng.uniform(-0.8, 0.8, p.shape)
    return layer


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("lengths", [None, [5, 2, 4]], ids=["full", "lengths"])
@pytest.mark.parametrize("cell, opts", CELLS)
def test_no_grad_forward_is_identical(cell, opts, lengths, bidirectional, dtype):
    layer = _layer(cell, opts, dtype, bidirectional)
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, 5, 3)).astype(dtype)
    s0 = layer.initial_state(3)
    s0 = type(s0)(*(rng.standard_normal(a.shape).astype(dtype) for a in s0)) \
        if isinstance(s0, tuple) else rng.standard_normal(s0.shape).astype(dtype)
    for training in (True, False):
        layer.train(training)
        out, state, cache = layer.forward(x, s0, lengths)
        out2, state2, cache2 = layer.forward(x, s0, lengths, grad=False)
        assert cache is not None and cache2 is None
        np.testing.assert_array_equal(out2, out)
        for a, b in zip(np.atleast_1d(state) if cell != "lstm" else state,
                        np.atleast_1d(state2) if cell != "lstm" else state2):
            np.testing.assert_array_equal(b, a)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lengths", [None, [5, 2, 4]], ids=["full", "lengths"])
@pytest.mark.parametrize("opts", [{}, {"peephole": True}], ids=["plain", "peephole"])
def test_lstm_backward_consuming_the_cache_is_identical(opts, lengths, dtype):
    layer = _layer("lstm", opts, dtype, bidirectional=True)
    rng = np.random.default_rng(8)
    x = rng.standard_normal((3, 5, 3)).astype(dtype)
    out, state, cache = layer.forward(x, None, lengths)
    dout = rng.standard_normal(out.shape).astype(dtype)
    dstate = type(state)(*(rng.standard_normal(a.shape).astype(dtype) for a in state))
    snapshot = [{k: v.copy() for k, v in d.items() if isinstance(v, np.ndarray)}
                for lc in cache["layers"] for d in lc["dirs"]]
    layer.zero_grad()
    dx, ds0 = layer.backward(dout, cache, dstate)
    plain = {k: g.copy() for k, g in layer.grads().items()}
    # the default leaves every cache array as it was
    for d, snap in zip((d for lc in cache["layers"] for d in lc["dirs"]), snapshot):
        for k, v in snap.items():
            np.testing.assert_array_equal(d[k], v)
    layer.zero_grad()
    _, _, cache = layer.forward(x, None, lengths)  # a cache serves one backward
    dx2, ds02 = layer.backward(dout, cache, dstate, consume_cache=True)
    np.testing.assert_array_equal(dx2, dx)
    for a, b in zip(ds02, ds0):
        np.testing.assert_array_equal(a, b)
    for k, g in layer.grads().items():
        np.testing.assert_array_equal(g, plain[k])


@pytest.mark.parametrize("lengths", [None, [5, 2, 4]], ids=["full", "lengths"])
@pytest.mark.parametrize("opts", [{}, {"peephole": True}], ids=["plain", "peephole"])
def test_lstm_backward_blocks_of_steps_change_nothing(opts, lengths, monkeypatch):
    """The backward forms its factors for blocks of steps; 1, 2 or 3 steps per block (the last
    block shorter) give exactly the one-block gradients.  (NumPy cells.)"""
    monkeypatch.setenv("RNNKIT_KERNELS", "numpy")
    layer = _layer("lstm", opts, np.float64, bidirectional=True)
    rng = np.random.default_rng(9)
    x = rng.standard_normal((3, 5, 3))
    out, _, cache = layer.forward(x, None, lengths)
    dout = rng.standard_normal(out.shape)
    layer.zero_grad()
    dx, ds0 = layer.backward(dout, cache)
    want = {k: g.copy() for k, g in layer.grads().items()}
    for steps in (1, 2, 3):
        monkeypatch.setattr(rnnkit.nn.cells.lstm, "_BLOCK", 3 * 4 * steps)  # B * H * steps
        for consume in (False, True):
            _, _, cache = layer.forward(x, None, lengths)
            layer.zero_grad()
            dx2, ds02 = layer.backward(dout, cache, consume_cache=consume)
            np.testing.assert_array_equal(dx2, dx)
            for a, b in zip(ds02, ds0):
                np.testing.assert_array_equal(a, b)
            for k, g in layer.grads().items():
                np.testing.assert_array_equal(g, want[k])


# -- the language model -------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("dropout", [0.0, 0.3], ids=["nodrop", "dropout"])
def test_lm_loss_equals_the_plain_composition(cell, dropout, dtype):
    cfg = LMConfig(vocab_size=9, cell=cell, embed_size=4, hidden_size=5, num_layers=2,
                   dropout=dropout, dtype=dtype)
    model = LanguageModel(cfg, rng=np.random.default_rng(0))
    rng = np.random.default_rng(1)
    ids, targets = rng.integers(0, 9, (3, 6)), rng.integers(0, 9, (3, 6))
    mask = rng.random((3, 6)) < 0.8
    s0 = model.initial_state(3)
    # plain: forward, a non-overwriting loss, a backward that keeps its cache
    model.zero_grad()
    logits, state, cache = model.forward(ids, s0, rng=np.random.default_rng(2))
    loss, dlogits, n = softmax_cross_entropy(logits, targets, mask)
    model.backward(dlogits, cache)
    want = {k: g.copy() for k, g in model.grads().items()}
    # fast: loss() overwrites the logits and lets the layers consume the cache
    model.zero_grad()
    loss2, n2, state2 = model.loss(ids, targets, s0, mask=mask, rng=np.random.default_rng(2))
    assert (loss2, n2) == (loss, n)
    for a, b in zip(np.atleast_1d(state) if cell != "lstm" else state,
                    np.atleast_1d(state2) if cell != "lstm" else state2):
        np.testing.assert_array_equal(b, a)
    for k, g in model.grads().items():
        np.testing.assert_array_equal(g, want[k])
    # evaluation: backward=False keeps no history and leaves the gradients alone
    model.eval()
    model.zero_grad()
    logits_e, state_e, _ = model.forward(ids, s0)
    loss_e, _, _ = softmax_cross_entropy(logits_e, targets, mask)
    loss3, n3, state3 = model.loss(ids, targets, s0, mask=mask, backward=False)
    assert (loss3, n3) == (loss_e, n)
    for a, b in zip(np.atleast_1d(state_e) if cell != "lstm" else state_e,
                    np.atleast_1d(state3) if cell != "lstm" else state3):
        np.testing.assert_array_equal(b, a)
    assert not any(g.any() for g in model.grads().values())


def test_lstm_time_loops_run_on_one_blas_thread_and_restore_the_count(monkeypatch, kernels):
    """The per-step multiplies are too small for several BLAS threads (which collapse on a busy
    machine); the loops drop to one thread and put the caller's count back, numbers unchanged."""
    import importlib

    from rnnkit.nn import _blas

    cell = importlib.import_module("rnnkit.nn.cells." + (
        "lstm" if kernels == "numpy" else "kernels.lstm"))

    if _blas.get_threads() is None:
        pytest.skip("NumPy's BLAS is not an OpenBLAS that rnnkit can control")
    layer = _layer("lstm", {}, np.float64)  # 2 layers: 2 forward and 2 backward loops
    x = np.random.default_rng(10).standard_normal((3, 5, 3))
    with _blas.blas_threads(1):
        out1, _, cache = layer.forward(x)
        dx1, _ = layer.backward(np.ones_like(out1), cache)
    seen = []

    def spy(n):
        seen.append(n)
        return _blas.blas_threads(n)

    monkeypatch.setattr(cell, "blas_threads", spy)
    with _blas.blas_threads(2):
        out2, _, cache = layer.forward(x)
        dx2, _ = layer.backward(np.ones_like(out2), cache)
        assert _blas.get_threads() == 2
    assert seen == [1, 1, 1, 1]
    np.testing.assert_array_equal(out2, out1)
    np.testing.assert_array_equal(dx2, dx1)


@pytest.mark.parametrize("dropout", [0.0, 0.3], ids=["nodrop", "dropout"])
def test_lm_loss_reusing_its_scratch_memory_gives_the_same(dropout):
    """loss() lends the previous call's big arrays to the next; calls of other shapes (an
    evaluation batch) in between, and repeated calls, give what a fresh model gives."""
    cfg = LMConfig(vocab_size=9, cell="lstm", embed_size=4, hidden_size=5, num_layers=2,
                   dropout=dropout, dtype="float32")
    model = LanguageModel(cfg, rng=np.random.default_rng(0))
    fresh = LanguageModel(cfg, rng=np.random.default_rng(0))
    rng = np.random.default_rng(3)
    batches = [(rng.integers(0, 9, (B, 6)), rng.integers(0, 9, (B, 6))) for B in (3, 3, 2, 3)]
    for k, (ids, targets) in enumerate(batches):
        for training in (True, False):
            for m in (model, fresh):
                m.train(training)
                m.zero_grad()
            got = model.loss(ids, targets, rng=np.random.default_rng(k), backward=training)
            fresh._scratch = {}  # as if each call were the first
            want = fresh.loss(ids, targets, rng=np.random.default_rng(k), backward=training)
            assert got[:2] == want[:2]
            for a, b in zip(got[2], want[2]):
                np.testing.assert_array_equal(a, b)
            for (k1, g1), g2 in zip(model.grads().items(), fresh.grads().values()):
                np.testing.assert_array_equal(g1, g2, err_msg=k1)
    assert model._scratch  # it did keep memory between calls


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 2e-6)])
@pytest.mark.parametrize("lengths", [None, [5, 2, 4]], ids=["full", "lengths"])
@pytest.mark.parametrize("opts", [{}, {"peephole": True}], ids=["plain", "peephole"])
def test_lstm_exp_and_tanh_forms_of_the_gates_agree(opts, lengths, dtype, tol, monkeypatch):
    """Large blocks take the gates (and tanh(c)) through exp, small ones through tanh; the
    tests elsewhere run small sizes, so here both forms are forced on the same layer.  (NumPy
    cells.)"""
    monkeypatch.setenv("RNNKIT_KERNELS", "numpy")
    layer = _layer("lstm", opts, dtype, bidirectional=True)
    rng = np.random.default_rng(11)
    x = (2 * rng.standard_normal((3, 5, 3))).astype(dtype)
    dout = rng.standard_normal((3, 5, 8)).astype(dtype)
    results = []
    for threshold in (0, 10**9):  # always exp, never exp
        monkeypatch.setattr(rnnkit.nn.cells.lstm, "_EXP_GATES", threshold)
        monkeypatch.setattr(rnnkit.nn.cells.lstm, "_EXP_TANH", threshold)
        out, state, cache = layer.forward(x, None, lengths)
        layer.zero_grad()
        dx, _ = layer.backward(dout, cache)
        results.append([out, *state, dx, *(g.copy() for g in layer.grads().values())])
        out2, _, _ = layer.forward(x, None, lengths, grad=False)
        np.testing.assert_array_equal(out2, out)  # the no-grad path takes the same form
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # exp overflows quietly
        monkeypatch.setattr(rnnkit.nn.cells.lstm, "_EXP_GATES", 0)
        monkeypatch.setattr(rnnkit.nn.cells.lstm, "_EXP_TANH", 0)
        out, (h, c), _ = layer.forward(1e4 * x, None, lengths)
    assert np.isfinite(out).all() and np.isfinite(c).all() and np.abs(h).max() <= 1
