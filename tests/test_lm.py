"""rnnkit.tasks.lm.model: the language model's gradients, loss, truncated BPTT and generation
step."""

from __future__ import annotations

import numpy as np
import pytest
from gradcheck import check_module_grads

from rnnkit.errors import ConfigError, ShapeError
from rnnkit.tasks.lm.inference import load_lm
from rnnkit.tasks.lm.model import LanguageModel, LMConfig
from rnnkit.tasks.lm.task import LMTask, evaluate_lm
from rnnkit.text.tokenizers import CharTokenizer

V = 7


def _model(cell="lstm", tie=False, dropout=0.0, layers=2, seed=0, dtype="float64"):
    H = 5
    cfg = LMConfig(vocab_size=V, cell=cell, embed_size=H if tie else 4, hidden_size=H,
                   num_layers=layers, dropout=dropout, tie_weights=tie, dtype=dtype)
    return LanguageModel(cfg, rng=np.random.default_rng(seed))


def _ids(B=2, T=6, seed=1):
    return np.random.default_rng(seed).integers(0, V, size=(B, T))


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("tie", [False, True], ids=["untied", "tied"])
@pytest.mark.parametrize("dropout", [0.0, 0.3], ids=["nodrop", "dropout"])
def test_gradcheck(cell, tie, dropout):
    model = _model(cell, tie, dropout)
    ids = _ids()
    state0 = model.initial_state(2)
    rng = np.random.default_rng(5)
    state0 = type(state0)(*(rng.standard_normal(s.shape) * 0.5 for s in state0)) \
        if isinstance(state0, tuple) else rng.standard_normal(state0.shape) * 0.5

    def fwd():
        # a fresh generator per call: every call drops the same units
        logits, _, cache = model.forward(ids, state0, rng=np.random.default_rng(3))
        return logits, cache

    def bwd(dlogits, cache):
        model.backward(dlogits, cache)
        return {}

    errors = check_module_grads(fwd, bwd, {}, model.parameters(), model.grads())
    assert set(errors) == set(model.parameters())
    assert ("out.W" in errors) != tie and ("b_out" in errors) == tie


def test_loss_is_manual_cross_entropy_and_its_gradient():
    model = _model("gru", dropout=0.0)
    ids, targets = _ids(seed=2), _ids(seed=3)
    logits, _, _ = model.forward(ids)
    z = logits - logits.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    manual = -np.take_along_axis(logp, targets[..., None], -1).mean()
    model.zero_grad()
    loss, n, _ = model.loss(ids, targets)
    assert n == targets.size
    assert abs(loss - manual) < 1e-12
    # the accumulated gradient is that of the mean loss: central differences on a few entries
    W = model.parameters()["rnn.layers.0.fwd.W_h"]
    analytic = model.grads()["rnn.layers.0.fwd.W_h"].copy()
    for idx in [(0, 0), (2, 7), (4, 14)]:
        old = W[idx]
        W[idx] = old + 1e-6
        up = model.loss(ids, targets, backward=False)[0]
        W[idx] = old - 1e-6
        down = model.loss(ids, targets, backward=False)[0]
        W[idx] = old
        assert abs((up - down) / 2e-6 - analytic[idx]) < 1e-8


@pytest.mark.parametrize("tie", [False, True], ids=["untied", "tied"])
def test_loss_calls_that_reuse_the_logits_buffer_equal_fresh_ones(tie):
    """loss() writes its logits over those of its previous call: a second call's loss and
    gradients equal those of a model that never made the first."""
    used, fresh = _model(tie=tie), _model(tie=tie)
    used.loss(_ids(seed=4), _ids(seed=5))
    used.zero_grad()
    got = used.loss(_ids(seed=6), _ids(seed=7))[0]
    assert "logits" in used._scratch
    fresh.zero_grad()
    want = fresh.loss(_ids(seed=6), _ids(seed=7))[0]
    assert got == want
    for k, g in fresh.grads().items():
        np.testing.assert_array_equal(used.grads()[k], g)


def test_tied_weights_share_the_embedding():
    model = _model("lstm", tie=True)
    assert "out.W" not in model.parameters() and "b_out" in model.parameters()
    ids = _ids()
    logits, _, _ = model.forward(ids)
    h = model.rnn.forward(model.embed.param["W"][ids])[0]
    np.testing.assert_allclose(logits, h @ model.embed.param["W"].T + model.param["b_out"],
                               atol=1e-12)


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_truncated_bptt_windows_equal_one_long_forward(cell):
    """Carrying the state across windows gives the numbers of one forward over the whole text;
    and the task's carried state after two windows is that forward's final state."""
    model = _model(cell)
    ids = _ids(B=2, T=13)
    full, final, _ = model.forward(ids[:, :12])
    a, sa, _ = model.forward(ids[:, :6])
    b, sb, _ = model.forward(ids[:, 6:12], sa)
    np.testing.assert_allclose(np.concatenate([a, b], axis=1), full, atol=1e-12)
    for x, y in zip(sb if isinstance(sb, tuple) else [sb],
                    final if isinstance(final, tuple) else [final]):
        np.testing.assert_allclose(x, y, atol=1e-12)

    tok = CharTokenizer().fit("abcd")
    task = LMTask(model, tok, ids.reshape(-1)[: 2 * 13] % len(tok.vocab), batch_size=2, bptt=6)
    task.start_epoch(1)
    streams = task.streams
    rng = np.random.default_rng(0)
    task.train_batch(0, rng)
    task.train_batch(1, rng)
    _, want, _ = model.forward(streams[:, :12])
    got = task.carry
    for x, y in zip(got if isinstance(got, tuple) else [got],
                    want if isinstance(want, tuple) else [want]):
        np.testing.assert_allclose(x, y, atol=1e-12)


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("tie", [False, True], ids=["untied", "tied"])
def test_step_equals_forward(cell, tie):
    model = _model(cell, tie, dropout=0.5).eval()  # eval: no dropout in either path
    ids = _ids(B=1, T=5)
    logits, _, _ = model.forward(ids)
    state = model.initial_state(1)
    for t in range(5):
        step_logits, state = model.step(ids[:, t], state)
        np.testing.assert_allclose(step_logits, logits[:, t], atol=1e-12)


def test_dropout_uses_the_given_rng_and_is_off_in_eval():
    model = _model("lstm", dropout=0.5)
    ids = _ids()
    a = model.forward(ids, rng=np.random.default_rng(1))[0]
    b = model.forward(ids, rng=np.random.default_rng(1))[0]
    c = model.forward(ids, rng=np.random.default_rng(2))[0]
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    model.eval()
    np.testing.assert_array_equal(model.forward(ids)[0], model.forward(ids)[0])


def test_config_checks():
    with pytest.raises(ConfigError, match="tie_weights needs embed_size == hidden_size"):
        LMConfig(vocab_size=5, embed_size=4, hidden_size=6, tie_weights=True)
    with pytest.raises(ConfigError, match="cell must be"):
        LMConfig(vocab_size=5, cell="transformer")
    with pytest.raises(ConfigError, match="unknown language-model config keys"):
        LMConfig.from_dict({"vocab_size": 5, "heads": 2})
    cfg = LMConfig(vocab_size=5, dropout=0.1)
    assert LMConfig.from_dict(cfg.to_dict()) == cfg
    model = _model()
    with pytest.raises(ShapeError, match="expected ids in 0..6"):
        model.forward(np.array([[1, 7]]))
    with pytest.raises(ValueError, match=r"expected ids of shape \(B, T\)"):
        model.forward(np.array([1, 2]))


def test_evaluate_lm_matches_the_mean_loss_and_restores_mode():
    model = _model("gru", dropout=0.3)
    ids = np.random.default_rng(4).integers(0, V, size=41)
    r = evaluate_lm(model, ids, batch_size=1, bptt=100)
    model.eval()
    want = model.loss(ids[None, :-1], ids[None, 1:], backward=False)[0]
    model.train()
    assert abs(r["loss"] - want) < 1e-12 and r["tokens"] == 40
    assert abs(r["bits"] - want / np.log(2)) < 1e-12
    assert model.training


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("n_ids, B, bptt", [(41, 3, 4), (40, 4, 3), (23, 2, 5), (57, 5, 2)])
def test_evaluate_lm_scores_every_token_once_row_by_row(cell, n_ids, B, bptt):
    """B parallel rows score exactly what B separate one-row passes over the segments
    [row start, next row start] (the last row: to the end of the text) score."""
    model = _model(cell)
    ids = np.random.default_rng(n_ids).integers(0, V, size=n_ids)
    r = evaluate_lm(model, ids, batch_size=B, bptt=bptt)
    assert r["tokens"] == n_ids - 1
    N = n_ids // B
    total = 0.0
    for b in range(B):
        seg = ids[b * N:(b + 1) * N + 1] if b < B - 1 else ids[b * N:]
        loss, k, _ = model.loss(seg[None, :-1], seg[None, 1:], backward=False)
        total += loss * k
    assert r["loss"] == pytest.approx(total / (n_ids - 1), rel=1e-12)


def test_load_lm_round_trip(tmp_path):
    from rnnkit.train.checkpoint import save_checkpoint

    model = _model("lstm", tie=True)
    tok = CharTokenizer().fit("abcd")  # 3 specials + 4 characters = V
    save_checkpoint(tmp_path / "ck", kind="lm", config={"model": model.cfg.to_dict()},
                    weights=model.state_dict(), vocab=tok.to_dict())
    loaded, tok2, _ = load_lm(tmp_path / "ck")
    assert not loaded.training and tok2.vocab == tok.vocab
    ids = _ids()
    np.testing.assert_array_equal(loaded.forward(ids)[0], model.eval().forward(ids)[0])
