"""Output-recurrent language model: gradients (finite differences and PyTorch), teacher forcing
as one batched pass, scheduled sampling against a plain step-by-step loop, task and loading."""

from __future__ import annotations

import numpy as np
import pytest
from gradcheck import check_module_grads

from rnnkit.errors import ConfigError
from rnnkit.tasks.lm.inference import load_lm
from rnnkit.tasks.lm.output_recurrent import (
    ORConfig,
    OutputRecurrentLM,
    backward,
    forward,
    hidden,
    make_chooser,
    scheduled_forward,
)

V, H, B, T = 7, 5, 3, 6


def _model(nonlinearity="tanh", dropout=0.0, dtype="float64", seed=0):
    lm = OutputRecurrentLM(ORConfig(vocab_size=V, hidden_size=H, nonlinearity=nonlinearity,
                                    dropout=dropout, dtype=dtype), rng=seed)
    rng = np.random.default_rng(seed + 1)
    for p in lm.parameters().values():  # biases away from 0, weights large enough to matter
        p[...] = 0.5 * rng.standard_normal(p.shape)
    return lm


def _ids(seed=2, shape=(B, T)):
    return np.random.default_rng(seed).integers(0, V, size=shape)


@pytest.mark.parametrize("dropout", [0.0, 0.4])
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_gradcheck_teacher_forced_and_fixed_feedback(nonlinearity, dropout):
    lm = _model(nonlinearity, dropout)
    x, y = _ids(2), _ids(3)  # any fed-back tokens: the backward of scheduled sampling

    def fwd():
        mask = lm._mask((B, T, H), np.random.default_rng(5))  # the same mask on every call
        return forward(lm.param, x, y, lm.relu, mask)

    def bwd(dlogits, cache):
        lm.backward(dlogits, cache)
        return {}

    errors = check_module_grads(fwd, bwd, {}, lm.parameters(), lm.grads())
    assert set(errors) == {"W_xh", "W_yh", "b", "W_hq", "b_q"}


def test_gradcheck_of_the_loss():
    lm = _model()
    x, y = _ids(4), _ids(5)

    def fwd():
        logits, _, cache = lm.forward(x)
        return logits, cache

    def bwd(dlogits, cache):
        lm.backward(dlogits, cache)
        return {}

    check_module_grads(fwd, bwd, {}, lm.parameters(), lm.grads())
    lm.zero_grad()
    _, n, state = lm.loss(x, y)
    assert n == B * T and state is None
    # d loss / d b_q is mean(softmax - onehot): sums to zero over the vocabulary
    assert abs(lm.grad["b_q"].sum()) < 1e-12
    eps = 1e-6
    lm.param["b"][0] += eps
    up = lm.loss(x, y, backward=False)[0]
    lm.param["b"][0] -= 2 * eps
    down = lm.loss(x, y, backward=False)[0]
    lm.param["b"][0] += eps
    assert abs((up - down) / (2 * eps) - lm.grad["b"][0]) < 1e-8


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_matches_pytorch(nonlinearity):
    torch = pytest.importorskip("torch")
    lm = _model(nonlinearity)
    x, y = _ids(6), _ids(7)
    dlogits = np.random.default_rng(8).standard_normal((B, T, V))
    logits, cache = forward(lm.param, x, y, lm.relu)
    got = backward(lm.param, dlogits, cache)
    tp = {k: torch.tensor(v, requires_grad=True) for k, v in lm.param.items()}
    a = tp["W_xh"][torch.tensor(x)] + tp["W_yh"][torch.tensor(y)] + tp["b"]
    h = torch.relu(a) if nonlinearity == "relu" else torch.tanh(a)
    out = h @ tp["W_hq"] + tp["b_q"]
    (out * torch.tensor(dlogits)).sum().backward()
    np.testing.assert_allclose(logits, out.detach().numpy(), rtol=0, atol=1e-10)
    for k, g in got.items():
        np.testing.assert_allclose(g, tp[k].grad.numpy(), rtol=0, atol=1e-10, err_msg=k)


def test_teacher_forcing_is_the_step_loop_and_one_pass():
    lm = _model()
    x = _ids(9)
    logits, state, _ = lm.forward(x)
    assert state is None
    for t in range(T):  # the generation step sees the same token as input and feedback
        step_logits, _ = lm.step(x[:, t], lm.initial_state(B))
        np.testing.assert_allclose(step_logits, logits[:, t], rtol=0, atol=1e-12)
    # steps are independent: the logits at t do not depend on any other step's token
    x2 = x.copy()
    x2[:, 0] = (x2[:, 0] + 1) % V
    np.testing.assert_array_equal(lm.forward(x2)[0][:, 1:], logits[:, 1:])


def _plain_loop(p, x, replace, choose, relu, y0):
    """Scheduled sampling written as the textbook loop over time, row by row."""
    Bx, Tx = x.shape
    logits = np.zeros((Bx, Tx, p["W_hq"].shape[1]))
    fed = np.zeros_like(x)
    for t in range(Tx):
        for b in range(Bx):
            if replace[b, t] and t > 0:
                fed[b, t] = choose(logits[b:b + 1, t - 1])[0]
            elif replace[b, t] and y0 is not None:
                fed[b, t] = y0[b]
            else:
                fed[b, t] = x[b, t]
            h = hidden(p, x[b, t], fed[b, t], relu)
            logits[b, t] = h @ p["W_hq"] + p["b_q"]
    return logits, fed


@pytest.mark.parametrize("prob", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("with_y0", [False, True])
def test_scheduled_forward_equals_the_plain_loop(prob, with_y0):
    lm = _model("relu")
    x = _ids(10, (4, 9))
    replace = np.random.default_rng(11).random(x.shape) < prob
    y0 = _ids(12, (4,)) if with_y0 else None
    choose = make_chooser("argmax", None)
    logits, fed, cache = scheduled_forward(lm.param, x, replace, choose, True, y0)
    want_logits, want_fed = _plain_loop(lm.param, x, replace, choose, True, y0)
    np.testing.assert_array_equal(fed, want_fed)
    np.testing.assert_allclose(logits, want_logits, rtol=0, atol=1e-12)
    # the backward of scheduled sampling is that of a fixed-feedback pass
    again, _ = forward(lm.param, x, fed, True)
    np.testing.assert_allclose(again, logits, rtol=0, atol=1e-12)
    assert cache["y"] is fed


def test_sampled_feedback_follows_the_softmax():
    rng = np.random.default_rng(13)
    z = np.log(np.array([[0.7, 0.2, 0.1, 0.0 + 1e-300]]))
    draw = make_chooser("sample", rng)
    counts = np.bincount(np.concatenate([draw(np.repeat(z, 500, 0)) for _ in range(20)]),
                         minlength=4) / 10000
    np.testing.assert_allclose(counts, [0.7, 0.2, 0.1, 0.0], atol=0.02)


def test_loss_with_scheduled_sampling_carries_the_prediction():
    lm = _model()
    x, y = _ids(14), _ids(15)
    loss, n, state = lm.loss(x, y, None, rng=np.random.default_rng(0), ss_prob=0.5)
    assert state.shape == (1, B) and state.dtype.kind == "i" and n == B * T
    # reproducible with the same generator; p = 0 is teacher forcing whatever the state
    again = lm.loss(x, y, None, rng=np.random.default_rng(0), ss_prob=0.5, backward=False)
    assert again[0] == loss
    tf = lm.loss(x, y, state, backward=False)[0]
    assert tf == lm.loss(x, y, None, backward=False)[0]
    with pytest.raises(ValueError, match="ss_prob"):
        lm.loss(x, y, ss_prob=1.5)


def test_config_and_bad_inputs():
    with pytest.raises(ConfigError):
        ORConfig(vocab_size=5, nonlinearity="sigmoid")
    with pytest.raises(ConfigError):
        ORConfig.from_dict({"vocab_size": 5, "layers": 2})
    with pytest.raises(ConfigError):
        ORConfig(vocab_size=5, cell="lstm")
    cfg = ORConfig(vocab_size=5)
    assert ORConfig.from_dict(cfg.to_dict()) == cfg and cfg.to_dict()["cell"] == \
        "output-recurrent"
    lm = OutputRecurrentLM(cfg, rng=0)
    with pytest.raises(ValueError, match=r"expected ids of shape \(B, T\)"):
        lm.forward(np.zeros(4, np.int64))
    with pytest.raises(ValueError, match=r"expected ids in 0\.\.4"):
        lm.forward(np.full((1, 2), 5))
    with pytest.raises(ConfigError, match="feedback"):
        make_chooser("soft", None)


def test_task_trains_saves_and_loads(tmp_path):
    from rnnkit.tasks.lm.output_recurrent_task import OutputRecurrentTask, evaluate_free_running
    from rnnkit.text.tokenizers import make_tokenizer
    from rnnkit.train.trainer import TrainConfig, Trainer

    text = "abcabcabdabcabcabd\n" * 30
    tok = make_tokenizer("char").fit(text)
    ids = tok.encode(text)
    lm = OutputRecurrentLM(ORConfig(vocab_size=len(tok.vocab), hidden_size=16), rng=0)
    task = OutputRecurrentTask(lm, tok, ids[:450], ids[450:], batch_size=4, bptt=8,
                               eval_batch_size=2, ss_prob=0.25)
    before = task.evaluate("valid")
    assert set(before) == {"loss", "ppl", "bpc", "free_loss", "free_ppl"}
    summary = Trainer(task, TrainConfig(epochs=3, lr=1e-2, progress=False), tmp_path / "run",
                      echo=lambda s: None).fit()
    after = task.evaluate("valid")
    assert after["loss"] < before["loss"] - 0.3
    assert summary["reason"] == "epochs"
    model, tok2, ck = load_lm(tmp_path / "run" / "best")
    assert ck.config["ss_prob"] == 0.25 and ck.config["model"]["cell"] == "output-recurrent"
    assert not model.training and tok2.vocab == tok.vocab
    r = evaluate_free_running(model, ids[450:], 2, 8)
    assert r["tokens"] > 0 and np.isfinite(r["loss"])


def test_generation_helpers_drive_the_step():
    from rnnkit.decode import beam_search, generate

    lm = _model(dtype="float32")
    toks = list(generate(lm.step, lm.initial_state(1), 0, 6, np.random.default_rng(0)))
    assert len(toks) == 6 and all(0 <= t < V for t in toks)
    greedy = list(generate(lm.step, lm.initial_state(1), 0, 4, None, temperature=0))
    # with no hidden state, greedy decoding is a walk on argmax_w' logits(w)[w']
    table = np.argmax(lm.step(np.arange(V), lm.initial_state(V))[0], axis=-1)
    want, w = [], 0
    for _ in range(4):
        w = int(table[w])
        want.append(w)
    assert greedy == want
    hyps = beam_search(lm.step, lm.initial_state(1), 0, beam=3, max_len=4)
    assert hyps and len(hyps[0].tokens) == 4
