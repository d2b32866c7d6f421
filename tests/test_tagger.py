"""rnnkit.tasks.tag.model: gradient checks of the whole tagger (with and without the character
encoder) and of its masked loss, PyTorch agreement, padding invariance, unseen words."""

from __future__ import annotations

import numpy as np
import pytest
from gradcheck import check_module_grads
from test_classifier import randomize

from conftest import TorchTwin
from rnnkit.errors import ConfigError
from rnnkit.tasks.tag.model import CharEncoder, SequenceTagger, TaggerConfig
from rnnkit.text.chars import CharBatch, CharTable
from rnnkit.text.vocab import Vocab

LENGTHS = np.array([4, 2, 1])
V, K = 8, 3


def make_tagger(chars=True, cell="lstm", char_cell="lstm", num_layers=1, bidirectional=True,
                seed=0, **kw):
    cfg = TaggerConfig(vocab_size=V, num_tags=K, cell=cell, embed_size=3, hidden_size=2,
                       num_layers=num_layers, bidirectional=bidirectional,
                       char_vocab_size=6 if chars else 0, char_cell=char_cell,
                       char_embed_size=2, char_hidden_size=2, dtype="float64", **kw)
    return randomize(SequenceTagger(cfg, rng=seed), seed + 100)


def random_batch(seed=0, lengths=LENGTHS):
    """Word ids, a CharBatch whose distinct words have 1..3 characters, and tags."""
    rng = np.random.default_rng(seed)
    B, T = len(lengths), int(max(lengths))
    real = np.arange(T)[None, :] < np.asarray(lengths)[:, None]
    ids = np.where(real, rng.integers(1, V, (B, T)), 0)
    U = 4
    char_lengths = np.array([3, 1, 2, 3])
    char_ids = rng.integers(1, 6, (U, 3))
    char_ids[np.arange(3)[None, :] >= char_lengths[:, None]] = 0
    index = np.where(real, rng.integers(0, U, (B, T)), 0)
    tags = np.where(real, rng.integers(0, K, (B, T)), 0)
    return ids, CharBatch(char_ids, char_lengths, index), tags


def gradcheck_logits(model, ids, chars, seed=None):
    real = (np.arange(ids.shape[1])[None, :] < LENGTHS[:, None])[..., None]  # (B, T, 1)

    def fwd():
        # the logits at padded steps are not outputs of the tagger (the loss masks them)
        rng = None if seed is None else np.random.default_rng(seed)
        logits, cache = model.forward(ids, LENGTHS, chars, rng=rng)
        return logits * real, cache

    def bwd(dlogits, cache):
        model.backward(dlogits * real, cache)
        return {}

    return check_module_grads(fwd, bwd, {}, model.parameters(), model.grads())


@pytest.mark.parametrize("chars", [False, True], ids=["words", "words+chars"])
@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_tagger_gradcheck(cell, chars):
    model = make_tagger(chars, cell, char_cell=cell).eval()
    ids, cb, _ = random_batch(1)
    errors = gradcheck_logits(model, ids, cb if chars else None)
    assert set(errors) == set(model.parameters())
    if chars:
        assert any(k.startswith("chars.rnn") for k in errors)


def test_tagger_gradcheck_training_with_dropout_two_layers():
    model = make_tagger(True, num_layers=2, dropout=0.4, embed_dropout=0.3, word_dropout=0.3)
    ids, cb, _ = random_batch(2)
    gradcheck_logits(model, ids, cb, seed=5)


@pytest.mark.parametrize("chars", [False, True], ids=["words", "words+chars"])
def test_masked_loss_gradcheck(chars):
    """model.loss: gradient of the mean NLL over real tokens; padded targets never count."""
    model = make_tagger(chars, "gru").eval()
    ids, cb, tags = random_batch(3)
    cb = cb if chars else None
    tags_noisy = tags.copy()
    tags_noisy[np.arange(tags.shape[1])[None, :] >= LENGTHS[:, None]] = K - 1

    def fwd():
        loss, n = model.loss(ids, LENGTHS, tags, cb, backward=False)
        assert n == LENGTHS.sum()
        assert model.loss(ids, LENGTHS, tags_noisy, cb, backward=False)[0] == loss
        return np.array(loss), None

    def bwd(dloss, cache):
        model.loss(ids, LENGTHS, tags, cb)
        for g in model.grads().values():
            g *= float(dloss)
        return {}

    check_module_grads(fwd, bwd, {}, model.parameters(), model.grads())


def test_char_encoder_gradcheck():
    enc = randomize(CharEncoder(6, 2, 3, "lstm", dtype="float64", rng=0), 1)
    _, cb, _ = random_batch(4)

    def fwd():
        return enc.forward(cb.ids, cb.lengths)

    def bwd(dv, cache):
        enc.backward(dv, cache)
        return {}

    check_module_grads(fwd, bwd, {}, enc.parameters(), enc.grads())


def test_rows_do_not_depend_on_their_batch():
    model = make_tagger(True, num_layers=2).eval()
    ids, cb, _ = random_batch(5)
    logits, _ = model.forward(ids, LENGTHS, cb)
    for b, n in enumerate(LENGTHS):
        alone = CharBatch(cb.ids, cb.lengths, cb.index[b: b + 1, :n])
        one, _ = model.forward(ids[b: b + 1, :n], [n], alone)
        np.testing.assert_allclose(logits[b, :n], one[0], rtol=1e-12, atol=1e-14)


def test_tagger_matches_torch_without_chars():
    torch = pytest.importorskip("torch")
    model = make_tagger(False, num_layers=2).eval()
    ids, _, tags = random_batch(6)
    model.zero_grad()
    loss, _ = model.loss(ids, LENGTHS, tags)
    twin = TorchTwin(model)
    out, _ = twin.recurrent(ids, LENGTHS)
    real = torch.arange(ids.shape[1])[None, :] < torch.tensor(LENGTHS)[:, None]
    ref = torch.nn.functional.cross_entropy(twin.logits(out)[real], torch.tensor(tags)[real])
    ref.backward()
    assert loss == pytest.approx(ref.item(), abs=1e-12)
    want = twin.grads()
    for k, g in model.grads().items():
        np.testing.assert_allclose(g, want[k], rtol=0, atol=1e-10, err_msg=k)


def test_unseen_words_are_told_apart_by_their_spelling():
    """Two words outside the word vocabulary get the same word embedding (<unk>) but
    different character encodings, hence different predictions."""
    chars = Vocab.build(list("abcdxyz"), specials=("<pad>", "<unk>"))
    table = CharTable(chars, max_chars=20)
    cfg = TaggerConfig(vocab_size=V, num_tags=K, embed_size=3, hidden_size=3,
                       char_vocab_size=len(chars), char_embed_size=3, char_hidden_size=3)
    model = SequenceTagger(cfg, rng=0).eval()
    forms = table.add(["abc", "xyz"])
    ids = np.array([[1], [1]])  # both <unk>
    cb = table.batch(forms[:, None], np.array([1, 1]))
    logits, _ = model.forward(ids, [1, 1], cb)
    assert not np.allclose(logits[0], logits[1])


def test_char_table_keeps_prefix_and_suffix_of_long_words():
    chars = Vocab.build(list("abcdefghijklmnopqrstuvwxyz"), specials=("<pad>", "<unk>"))
    table = CharTable(chars, max_chars=6)
    k = table.add(["abcdefghij", "ab", "abcdefghij"])
    assert k[0] == k[2] != k[1]
    assert chars.decode(table.chars[k[0]]) == list("abchij")
    cb = table.batch(np.array([[k[0], k[1]], [k[1], 99]]), np.array([2, 1]))
    assert cb.ids.shape == (2, 6) and cb.lengths.tolist() == [6, 2]
    assert cb.index.tolist() == [[0, 1], [1, 0]]


def test_missing_chars_and_bad_config_are_refused():
    model = make_tagger(True)
    ids, _, _ = random_batch(7)
    with pytest.raises(ValueError, match="pass chars"):
        model.forward(ids, LENGTHS)
    with pytest.raises(ConfigError, match="num_tags"):
        TaggerConfig(vocab_size=5, num_tags=0)
    with pytest.raises(ConfigError, match="unknown tagger config keys"):
        TaggerConfig.from_dict({"vocab_size": 5, "num_tags": 2, "crf": True})
    cfg = TaggerConfig(vocab_size=5, num_tags=2, char_vocab_size=4)
    assert TaggerConfig.from_dict(cfg.to_dict()) == cfg
