"""rnnkit.tasks.seq2seq.model and conditioned: gradient checks of the whole model, the two decoder
drivers agreeing, decoding (greedy, sampling, beam), scheduled-sampling schedules."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from gradcheck import check_module_grads

from rnnkit.errors import ConfigError
from rnnkit.nn.cells.lstm import LSTMState
from rnnkit.nn.losses import softmax_cross_entropy
from rnnkit.tasks.lm.conditioned import ConditionedConfig, ConditionedGenerator, one_hot
from rnnkit.tasks.seq2seq.model import BOS_ID, EOS_ID, Seq2Seq, Seq2SeqConfig
from rnnkit.tasks.seq2seq.task import SamplingSchedule, make_batch

VS, VT = 8, 7
SRC = np.array([[4, 5, 6, 7], [5, 4, 0, 0], [7, 6, 5, 0]])
LEN = np.array([4, 2, 3])
TGT_IN = np.array([[2, 4, 5], [2, 6, 0], [2, 5, 4]])
TGT_OUT = np.array([[4, 5, 3], [6, 3, 0], [5, 4, 3]])
# The whole model's output is 63 logits, so at the default eps = 1e-6 the rounding error of a
# central difference (~1e-9) is 1e-6 of a parameter gradient as small as 1e-4 (attention's
# W_q); eps = 1e-5 keeps both rounding and truncation error far below the tolerance.
EPS = 1e-5


def make(seed=0, **kw):
    kw = {"embed_size": 3, "hidden_size": 3, "dtype": "float64", "cell": "lstm", **kw}
    model = Seq2Seq(Seq2SeqConfig(VS, VT, **kw), rng=seed)
    rng = np.random.default_rng(seed + 1)
    for p in model.parameters().values():
        p[...] = rng.uniform(-0.8, 0.8, p.shape)
    return model


def gradcheck_model(model, sample_prob=0.0, seed=7):
    def fwd():
        logits, cache = model.forward(SRC, LEN, TGT_IN, rng=np.random.default_rng(seed),
                                      sample_prob=sample_prob)
        return logits, cache

    def bwd(dlogits, cache):
        model.backward(dlogits, cache)
        return {}

    errors = check_module_grads(fwd, bwd, {}, model.parameters(), model.grads(), eps=EPS)
    assert set(errors) == set(model.parameters())


CONFIGS = [
    pytest.param({}, id="lstm-plain"),
    pytest.param({"cell": "gru", "attention": "dot"}, id="gru-dot"),
    pytest.param({"cell": "rnn", "attention": "general", "bidirectional": True},
                 id="rnn-bi-general"),
    pytest.param({"attention": "additive", "input_feed": True}, id="lstm-additive-feed"),
    pytest.param({"cell": "gru", "attention": "general", "input_feed": True, "num_layers": 2,
                  "bidirectional": True, "decoder_hidden_size": 4}, id="gru-2layer-bi-linear-feed"),
    pytest.param({"bidirectional": True, "bridge": "linear", "num_layers": 2}, id="lstm-bi-linear"),
    pytest.param({"attention": "dot", "bridge": "zero"}, id="lstm-zero-bridge"),
]


@pytest.mark.parametrize("kw", CONFIGS)
def test_gradcheck(kw):
    gradcheck_model(make(**kw))


@pytest.mark.parametrize("kw", [{"attention": "general"}, {"cell": "gru"}],
                         ids=["lstm-general", "gru-plain"])
def test_gradcheck_scheduled_sampling(kw):
    gradcheck_model(make(**kw), sample_prob=0.5)


def test_gradcheck_dropout():
    model = make(attention="additive", dropout=0.3, num_layers=2)
    gradcheck_model(model)
    gradcheck_model(model, sample_prob=0.3)


def test_gradcheck_loss():
    model = make(attention="general", bidirectional=True)

    def fwd():
        logits, cache = model.forward(SRC, LEN, TGT_IN)
        loss, dlogits, _ = softmax_cross_entropy(logits, TGT_OUT, TGT_OUT != 0)
        return np.array(loss), (cache, dlogits)

    def bwd(dloss, cache):
        model.backward(dloss * cache[1], cache[0])
        return {}

    check_module_grads(fwd, bwd, {}, model.parameters(), model.grads())
    loss, n = model.loss(SRC, LEN, TGT_IN, TGT_OUT, backward=False)
    assert n == 8 and loss == pytest.approx(float(fwd()[0]))


@pytest.mark.parametrize("kw", [{"attention": "general", "bidirectional": True},
                                {"cell": "gru"}], ids=["attention", "plain"])
def test_drivers_agree(kw):
    """The whole-target decoder and the step-by-step one give the same logits and gradients."""
    model = make(**kw)
    logits, cache = model.forward(SRC, LEN, TGT_IN)
    assert cache["dcache"][0] == "parallel"
    d = np.random.default_rng(0).standard_normal(logits.shape)
    model.zero_grad()
    model.backward(d, cache)
    g1 = {k: v.copy() for k, v in model.grads().items()}
    logits2, cache2 = model.forward(SRC, LEN, TGT_IN, sample_prob=1e-300)  # forces steps
    assert cache2["dcache"][0] == "steps"
    np.testing.assert_allclose(logits2, logits, rtol=1e-12, atol=1e-13)
    if cache["weights"] is not None:
        np.testing.assert_allclose(cache2["weights"], cache["weights"], atol=1e-13)
    model.zero_grad()
    model.backward(d, cache2)
    for k, v in model.grads().items():
        np.testing.assert_allclose(v, g1[k], rtol=1e-10, atol=1e-12, err_msg=k)


def test_padding_does_not_matter():
    """A padded row gives the same logits as that row alone, whatever the padding ids."""
    model = make(attention="additive", bidirectional=True, input_feed=True)
    logits, cache = model.forward(SRC, LEN, TGT_IN)
    src2 = SRC.copy()
    src2[1, 2:] = 7
    logits2, _ = model.forward(src2, LEN, TGT_IN)
    np.testing.assert_allclose(logits2, logits, rtol=1e-12)
    alone, _ = model.forward(SRC[1:2, :2], LEN[1:2], TGT_IN[1:2])
    np.testing.assert_allclose(alone[0], logits[1], rtol=1e-12)
    a = cache["weights"]
    np.testing.assert_allclose(a.sum(-1), 1.0, rtol=1e-12)
    assert (a[1, :, 2:] == 0).all() and (a[2, :, 3:] == 0).all()


def test_bridge_concat_is_the_encoder_state():
    model = make(bidirectional=True, num_layers=2, cell="lstm")
    _, state, _ = model.encode(SRC, LEN)
    _, final, _ = model.encoder.forward(model.src_embed.param["W"][SRC], lengths=LEN)
    assert isinstance(state.rnn, LSTMState) and state.rnn.h.shape == (2, 3, 6)
    for layer in range(2):
        np.testing.assert_array_equal(state.rnn.h[layer, :, :3], final.h[2 * layer])
        np.testing.assert_array_equal(state.rnn.h[layer, :, 3:], final.h[2 * layer + 1])
        np.testing.assert_array_equal(state.rnn.c[layer, :, 3:], final.c[2 * layer + 1])


# -- decoding ---------------------------------------------------------------------------------
@pytest.mark.parametrize("kw", [{"attention": "general", "input_feed": True},
                                {"cell": "gru"}], ids=["attention-feed", "plain"])
def test_beam_width_one_is_greedy(kw):
    model = make(**kw)
    tokens, weights = model.generate(SRC, LEN, max_len=6)
    for b in range(len(SRC)):
        hyp = model.beam_search(SRC[b, : LEN[b]], beam=1, max_len=6)
        assert len(hyp) == 1 and hyp[0].tokens == tokens[b]
        if weights[b] is not None:
            np.testing.assert_allclose(hyp[0].weights, weights[b], rtol=1e-12)
            assert weights[b].shape == (len(tokens[b]) + hyp[0].finished, LEN[b])


def test_generate_matches_teacher_forced_argmax():
    """Feeding the greedy output back as the target reproduces the same argmaxes."""
    model = make(attention="dot")
    model.out.param["b"][EOS_ID] = -50.0  # never stop
    tokens, _ = model.generate(SRC, LEN, max_len=4)
    tgt_in = np.array([[BOS_ID] + t[:-1] for t in tokens])
    logits, _ = model.forward(SRC, LEN, tgt_in)
    np.testing.assert_array_equal(logits.argmax(-1), np.array(tokens))


def test_beam_respects_max_len_without_eos():
    model = make(attention="general")
    model.out.param["b"][EOS_ID] = -1e3  # the decoder never emits <eos>
    hyps = model.beam_search(SRC[0], beam=3, max_len=5)
    assert len(hyps) == 3
    assert all(len(h.tokens) == 5 and not h.finished for h in hyps)
    assert len({tuple(h.tokens) for h in hyps}) == 3
    assert hyps[0].logp >= hyps[1].logp >= hyps[2].logp
    tokens, weights = model.generate(SRC, LEN, max_len=5)
    assert all(len(t) == 5 and EOS_ID not in t for t in tokens)
    assert weights[1].shape == (5, 2)


def test_beam_finds_better_than_greedy_and_stops_at_eos():
    model = make(attention="general", seed=3)
    greedy = model.beam_search(SRC[0], beam=1, max_len=8, alpha=0)[0]
    best = model.beam_search(SRC[0], beam=4, max_len=8, alpha=0)
    assert best[0].logp >= greedy.logp - 1e-12
    for h in best:
        assert EOS_ID not in h.tokens and len(h.tokens) <= 8
        # logp is the model's own log probability of the hypothesis
        if h.finished:
            toks = h.tokens + [EOS_ID]
            logits, _ = model.forward(SRC[:1, :], None, np.array([[BOS_ID] + toks[:-1]]))
            z = logits[0] - logits[0].max(-1, keepdims=True)
            lp = z - np.log(np.exp(z).sum(-1, keepdims=True))
            assert h.logp == pytest.approx(lp[np.arange(len(toks)), toks].sum(), rel=1e-10)


def test_sampling_is_seeded_and_temperature_low_is_greedy():
    model = make(attention="general")
    a, _ = model.generate(SRC, LEN, max_len=6, temperature=1.0, rng=np.random.default_rng(1))
    b, _ = model.generate(SRC, LEN, max_len=6, temperature=1.0, rng=np.random.default_rng(1))
    assert a == b
    g, _ = model.generate(SRC, LEN, max_len=6)
    c, _ = model.generate(SRC, LEN, max_len=6, temperature=1e-6, rng=np.random.default_rng(2))
    assert c == g


def test_bad_decode_arguments():
    model = make()
    with pytest.raises(ValueError, match="beam width must be at least 1, got 0"):
        model.beam_search(SRC[0], beam=0)
    with pytest.raises(ValueError, match="max_len must be at least 1"):
        model.generate(SRC, LEN, max_len=0)
    with pytest.raises(ValueError, match=r"expected src in 0..7"):
        model.generate(np.array([[9]]))
    with pytest.raises(ValueError, match=r"expected every length in 1..4"):
        model.forward(SRC, [4, 0, 3], TGT_IN)


def test_config():
    cfg = Seq2SeqConfig(10, 10, hidden_size=8, bidirectional=True, attention="additive")
    assert (cfg.decoder_hidden_size, cfg.bridge, cfg.attention_size) == (16, "concat", 16)
    assert Seq2SeqConfig.from_dict(cfg.to_dict()) == cfg
    assert Seq2SeqConfig(10, 10, hidden_size=8, decoder_hidden_size=5).bridge == "linear"
    with pytest.raises(ConfigError, match="unknown seq2seq config keys"):
        Seq2SeqConfig.from_dict({**cfg.to_dict(), "heads": 2})
    with pytest.raises(ConfigError, match="input_feed needs attention"):
        Seq2SeqConfig(10, 10, input_feed=True)
    with pytest.raises(ConfigError, match="dot attention needs decoder_hidden_size == 8"):
        Seq2SeqConfig(10, 10, hidden_size=8, decoder_hidden_size=4, attention="dot")
    with pytest.raises(ConfigError, match="bridge 'concat' needs"):
        Seq2SeqConfig(10, 10, hidden_size=8, decoder_hidden_size=4, bridge="concat")


# -- scheduled sampling -----------------------------------------------------------------------
def test_schedules():
    tf = SamplingSchedule("none")
    assert tf.sample_prob(0) == 0 and tf.sample_prob(10 ** 6) == 0
    lin = SamplingSchedule("linear", k=1.0, c=0.01, min_tf=0.2)
    assert [lin.teacher_forcing(i) for i in (0, 10, 50, 80, 1000)] == pytest.approx(
        [1.0, 0.9, 0.5, 0.2, 0.2])
    assert lin.sample_prob(50) == pytest.approx(0.5)
    exp = SamplingSchedule("exponential", k=0.99)
    assert exp.teacher_forcing(100) == pytest.approx(0.99 ** 100)
    inv = SamplingSchedule("inverse-sigmoid", k=100)
    assert inv.teacher_forcing(0) == pytest.approx(100 / 101)
    assert inv.teacher_forcing(500) == pytest.approx(100 / (100 + math.exp(5)))
    values = [inv.teacher_forcing(i) for i in range(0, 3000, 100)]
    assert all(a > b for a, b in itertools.pairwise(values))
    assert SamplingSchedule.from_dict(inv.to_dict()) == inv
    with pytest.raises(ConfigError, match="exponential schedule needs 0 < k < 1"):
        SamplingSchedule("exponential", k=1.5)
    with pytest.raises(ConfigError, match="inverse-sigmoid schedule needs k >= 1"):
        SamplingSchedule("inverse-sigmoid", k=0.5)
    with pytest.raises(ConfigError, match="schedule must be one of"):
        SamplingSchedule("cosine")


def test_make_batch():
    src, lengths, tgt_in, tgt_out = make_batch([[4, 5], [6]], [[7], [8, 9, 10]])
    np.testing.assert_array_equal(src, [[4, 5], [6, 0]])
    np.testing.assert_array_equal(lengths, [2, 1])
    np.testing.assert_array_equal(tgt_in, [[2, 7, 0, 0], [2, 8, 9, 10]])
    np.testing.assert_array_equal(tgt_out, [[7, 3, 0, 0], [8, 9, 10, 3]])


# -- one-to-many --------------------------------------------------------------------------------
def make_cond(seed=0, **kw):
    kw = {"vocab_size": VT, "cond_size": 3, "embed_size": 3, "hidden_size": 4,
          "dtype": "float64", **kw}
    model = ConditionedGenerator(ConditionedConfig(**kw), rng=seed)
    rng = np.random.default_rng(seed + 1)
    for p in model.parameters().values():
        p[...] = rng.uniform(-0.8, 0.8, p.shape)
    return model


@pytest.mark.parametrize("kw", [{"cell": "lstm", "num_layers": 2},
                                {"cell": "gru", "feed_condition": False},
                                {"cell": "rnn", "dropout": 0.2, "num_layers": 2}],
                         ids=["lstm-2layer", "gru-init-only", "rnn-dropout"])
def test_conditioned_gradcheck(kw):
    model = make_cond(**kw)
    cond = np.random.default_rng(3).standard_normal((3, 3))

    def fwd(cond):
        logits, cache = model.forward(cond, TGT_IN, rng=np.random.default_rng(0))
        return logits, cache

    def bwd(dlogits, cache):
        return {"cond": model.backward(dlogits, cache)}

    errors = check_module_grads(fwd, bwd, {"cond": cond}, model.parameters(), model.grads())
    assert set(errors) == {"cond", *model.parameters()}


def test_conditioned_generation():
    model = make_cond(cell="gru")
    cond = one_hot([0, 2], 3)
    np.testing.assert_array_equal(cond, [[1, 0, 0], [0, 0, 1]])
    seqs = model.generate(cond, max_len=5)
    assert len(seqs) == 2 and all(len(s) <= 5 and EOS_ID not in s for s in seqs)
    beam1 = [model.generate(cond[i:i + 1], max_len=5, beam=1)[0] for i in range(2)]
    assert beam1 == seqs
    # greedy tokens are the argmax of the teacher-forced logits of themselves
    model.out.param["b"][EOS_ID] = -50.0
    seqs = model.generate(cond, max_len=4)
    logits, _ = model.forward(cond, np.array([[BOS_ID] + s[:-1] for s in seqs]))
    np.testing.assert_array_equal(logits.argmax(-1), np.array(seqs))
    a = model.generate(cond, max_len=5, temperature=1.0, rng=np.random.default_rng(4))
    b = model.generate(cond, max_len=5, temperature=1.0, rng=np.random.default_rng(4))
    assert a == b
    with pytest.raises(ValueError, match=r"expected cond of shape \(B, 3\)"):
        model.generate(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="labels must be in 0..2"):
        one_hot([3], 3)
