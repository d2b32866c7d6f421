"""rnnkit.nn.pooling, rnnkit.nn.word_rnn and rnnkit.tasks.classify.model: gradient checks
(float64 finite differences and PyTorch), padding invariance, the 'last' pooling equal to the
final states, dropout, frozen embeddings, configuration checks."""

from __future__ import annotations

import numpy as np
import pytest
from gradcheck import check_module_grads

from conftest import TorchTwin
from rnnkit.errors import ConfigError
from rnnkit.nn.losses import softmax
from rnnkit.nn.pooling import pool_backward, pool_forward
from rnnkit.tasks.classify.model import ClassifierConfig, SequenceClassifier

B, T, H = 3, 5, 2
LENGTHS = np.array([5, 2, 1])  # unsorted, one full row, one of length 1
POOLS = ["last", "mean", "max"]


def randomize(model, seed=0, scale=0.9):
    rng = np.random.default_rng(seed)
    for p in model.parameters().values():
        p[...] = rng.uniform(-scale, scale, p.shape)
    return model


def make_classifier(pooling="max", cell="lstm", bidirectional=True, num_layers=1, seed=0,
                    **kw):
    cfg = ClassifierConfig(vocab_size=9, num_classes=3, cell=cell, embed_size=3,
                           hidden_size=H, num_layers=num_layers, bidirectional=bidirectional,
                           pooling=pooling, dtype="float64", **kw)
    return randomize(SequenceClassifier(cfg, rng=seed), seed + 100)


def random_ids(rng, lengths=LENGTHS, V=9):
    ids = rng.integers(2, V, (len(lengths), int(max(lengths))))
    ids[np.arange(ids.shape[1])[None, :] >= np.asarray(lengths)[:, None]] = 0
    return ids


# -- pooling --------------------------------------------------------------------------------
@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["equal", "variable"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("mode", POOLS)
def test_pooling_gradcheck(mode, bidirectional, lengths):
    rng = np.random.default_rng(1)
    F = 2 * H if bidirectional else H
    out = rng.standard_normal((B, T, F))
    lens = np.full(B, T) if lengths is None else lengths

    def fwd(out):
        return pool_forward(out, lens, mode, bidirectional)

    def bwd(dpooled, cache):
        return {"out": pool_backward(dpooled, cache)}

    check_module_grads(fwd, bwd, {"out": out})


@pytest.mark.parametrize("mode", POOLS)
def test_pooling_ignores_padded_steps_and_matches_direct(mode):
    rng = np.random.default_rng(2)
    out = rng.standard_normal((B, T, 2 * H))
    pooled, cache = pool_forward(out, LENGTHS, mode, True)
    noisy = out.copy()
    for b, n in enumerate(LENGTHS):
        noisy[b, n:] = 1e3  # padded steps: anything
    again, _ = pool_forward(noisy, LENGTHS, mode, True)
    np.testing.assert_array_equal(pooled, again)
    for b, n in enumerate(LENGTHS):
        real = out[b, :n]
        want = {"last": np.concatenate([real[-1, :H], real[0, H:]]),
                "mean": real.mean(axis=0), "max": real.max(axis=0)}[mode]
        np.testing.assert_allclose(pooled[b], want, rtol=1e-14)
    dout = pool_backward(np.ones_like(pooled), cache)
    for b, n in enumerate(LENGTHS):
        assert not dout[b, n:].any()  # no gradient reaches padding


def test_pooling_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    out = rng.standard_normal((B, T, 2 * H))
    dpooled = rng.standard_normal((B, 2 * H))
    for mode in POOLS:
        t = torch.tensor(out, requires_grad=True)
        lens = torch.tensor(LENGTHS)
        real = (torch.arange(T)[None, :] < lens[:, None])[..., None]
        if mode == "last":
            ref = torch.cat([t[torch.arange(B), lens - 1, :H], t[:, 0, H:]], dim=1)
        elif mode == "mean":
            ref = (t * real).sum(1) / lens[:, None]
        else:
            ref = t.masked_fill(~real, -torch.inf).max(dim=1).values
        ref.backward(torch.tensor(dpooled))
        pooled, cache = pool_forward(out, LENGTHS, mode, True)
        np.testing.assert_allclose(pooled, ref.detach().numpy(), rtol=0, atol=1e-12)
        np.testing.assert_allclose(pool_backward(dpooled, cache), t.grad.numpy(), rtol=0,
                                   atol=1e-12)


def test_pooling_rejects_unknown_mode():
    with pytest.raises(ValueError, match="pooling must be one of"):
        pool_forward(np.zeros((1, 2, 2)), np.array([2]), "sum")


# -- the whole classifier -------------------------------------------------------------------
def gradcheck_classifier(model, ids, lengths, seed=None):
    def fwd():
        rng = None if seed is None else np.random.default_rng(seed)
        return model.forward(ids, lengths, rng=rng)

    def bwd(dlogits, cache):
        model.backward(dlogits, cache)
        return {}

    params = model.parameters()
    if model.cfg.freeze_embeddings:
        params = {k: v for k, v in params.items() if not k.startswith("embed.")}
    return check_module_grads(fwd, bwd, {}, params, model.grads())


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("pooling", POOLS)
@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_classifier_gradcheck(cell, pooling, bidirectional):
    model = make_classifier(pooling, cell, bidirectional).eval()
    ids = random_ids(np.random.default_rng(4))
    errors = gradcheck_classifier(model, ids, LENGTHS)
    assert set(errors) == set(model.parameters())


@pytest.mark.parametrize("pooling", POOLS)
def test_classifier_gradcheck_training_with_every_dropout(pooling):
    """Two layers, dropout between them, on embeddings and on the pooled vector, and word
    dropout: with a fresh Generator of one seed per forward every mask repeats."""
    model = make_classifier(pooling, "lstm", True, num_layers=2, dropout=0.4,
                            embed_dropout=0.3, word_dropout=0.3)
    ids = random_ids(np.random.default_rng(5))
    gradcheck_classifier(model, ids, LENGTHS, seed=11)


def test_loss_gradient_is_gradient_of_mean_cross_entropy():
    """model.loss: the gradients it accumulates are those of the mean NLL it returns."""
    model = make_classifier("mean", "gru", True).eval()
    ids = random_ids(np.random.default_rng(6))
    labels = np.array([0, 2, 1])

    def fwd():
        loss, _ = model.loss(ids, LENGTHS, labels, backward=False)
        return np.array(loss), None

    def bwd(dloss, cache):
        model.loss(ids, LENGTHS, labels)
        for g in model.grads().values():
            g *= float(dloss)
        return {}

    check_module_grads(fwd, bwd, {}, model.parameters(), model.grads())


def test_frozen_embeddings_get_no_gradient():
    model = make_classifier("max", freeze_embeddings=True)
    ids = random_ids(np.random.default_rng(7))
    gradcheck_classifier(model.eval(), ids, LENGTHS)
    model.zero_grad()
    model.loss(ids, LENGTHS, [0, 1, 2])
    assert not model.grads()["embed.W"].any()


@pytest.mark.parametrize("pooling", POOLS)
def test_rows_do_not_depend_on_their_batch(pooling):
    """A padded row predicts exactly what it predicts alone, whatever pads it."""
    model = make_classifier(pooling, "lstm", True, num_layers=2).eval()
    ids = random_ids(np.random.default_rng(8))
    logits, _ = model.forward(ids, LENGTHS)
    for b, n in enumerate(LENGTHS):
        alone, _ = model.forward(ids[b: b + 1, :n], [n])
        np.testing.assert_allclose(logits[b], alone[0], rtol=1e-12, atol=1e-14)
    garbage = ids.copy()
    garbage[garbage == 0] = 5
    np.testing.assert_array_equal(model.forward(garbage, LENGTHS)[0], logits)


def test_last_pooling_is_the_final_state():
    """Pitfall check: 'last' = forward final h ⊕ backward final h of the top layer, which for
    the backward direction is its state after reading step 0."""
    model = make_classifier("last", "lstm", True, num_layers=2).eval()
    ids = random_ids(np.random.default_rng(9))
    emb = model.embed.param["W"][ids]
    out, (h, _), _ = model.rnn.forward(emb, lengths=LENGTHS)
    pooled, _ = pool_forward(out, LENGTHS, "last", True)
    np.testing.assert_array_equal(pooled, np.concatenate([h[2], h[3]], axis=1))


@pytest.mark.parametrize("pooling", POOLS)
def test_classifier_matches_torch(pooling):
    """Loss and every gradient against PyTorch (packed sequences; final states from h_n)."""
    torch = pytest.importorskip("torch")
    model = make_classifier(pooling, "lstm", True, num_layers=2).eval()
    ids = random_ids(np.random.default_rng(10))
    labels = np.array([2, 0, 1])
    model.zero_grad()
    loss, _ = model.loss(ids, LENGTHS, labels)

    twin = TorchTwin(model)
    out, (h_n, _) = twin.recurrent(ids, LENGTHS)
    lens = torch.tensor(LENGTHS)
    real = (torch.arange(out.shape[1])[None, :] < lens[:, None])[..., None]
    if pooling == "last":
        v = torch.cat([h_n[-2], h_n[-1]], dim=1)
    elif pooling == "mean":
        v = out.sum(1) / lens[:, None]
    else:
        v = out.masked_fill(~real, -torch.inf).max(dim=1).values
    ref = torch.nn.functional.cross_entropy(twin.logits(v), torch.tensor(labels))
    ref.backward()
    assert loss == pytest.approx(ref.item(), abs=1e-12)
    grads = model.grads()
    want = twin.grads()
    assert set(want) == set(grads)
    for k, g in grads.items():
        np.testing.assert_allclose(g, want[k], rtol=0, atol=1e-10, err_msg=k)


def test_dropout_is_off_in_eval_and_predict_proba_sums_to_one():
    model = make_classifier("max", dropout=0.5, embed_dropout=0.5, word_dropout=0.5)
    ids = random_ids(np.random.default_rng(11))
    a = model.forward(ids, LENGTHS, rng=np.random.default_rng(0))[0]
    b = model.forward(ids, LENGTHS, rng=np.random.default_rng(1))[0]
    assert not np.allclose(a, b)
    p = model.predict_proba(ids, LENGTHS)
    assert model.training  # restored
    model.eval()
    np.testing.assert_allclose(p, softmax(model.forward(ids, LENGTHS)[0]))
    np.testing.assert_allclose(p.sum(axis=1), 1.0)


def test_float32_model_trains():
    cfg = ClassifierConfig(vocab_size=9, num_classes=2, embed_size=4, hidden_size=4)
    model = SequenceClassifier(cfg, rng=0)
    ids = random_ids(np.random.default_rng(12))
    labels = np.array([0, 1, 1])
    first, _ = model.loss(ids, LENGTHS, labels, rng=np.random.default_rng(0))
    for _ in range(30):
        model.zero_grad()
        model.loss(ids, LENGTHS, labels, rng=np.random.default_rng(0))
        for p, g in zip(model.parameters().values(), model.grads().values()):
            p -= 0.5 * g
    last, _ = model.loss(ids, LENGTHS, labels, backward=False)
    assert model.dtype == np.float32 and last < first / 2


@pytest.mark.parametrize("bad, match", [
    ({"pooling": "sum"}, "pooling must be one of"),
    ({"num_classes": 1}, "num_classes"),
    ({"cell": "tcn"}, "cell must be"),
    ({"dropout": 1.0}, "dropout"),
    ({"hidden_size": 0}, "hidden_size"),
    ({"embed_init": "zeros"}, "embed_init"),
])
def test_config_rejects_bad_values(bad, match):
    kw = {"vocab_size": 5, "num_classes": 2, **bad}
    with pytest.raises(ConfigError, match=match):
        ClassifierConfig(**kw)


def test_config_round_trip_and_unknown_keys():
    cfg = ClassifierConfig(vocab_size=5, num_classes=2, pooling="mean")
    assert ClassifierConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="unknown classifier config keys"):
        ClassifierConfig.from_dict({**cfg.to_dict(), "heads": 4})


def test_bad_batches_are_refused():
    model = make_classifier()
    with pytest.raises(ValueError, match=r"expected ids of shape \(B, T\)"):
        model.forward(np.zeros(3, np.int64))
    with pytest.raises(ValueError, match="every length in 1..3"):
        model.forward(np.ones((2, 3), np.int64), [3, 4])
    with pytest.raises(ValueError, match="ids in 0..8"):
        model.forward(np.full((1, 2), 9), [2])
