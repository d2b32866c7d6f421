"""rnnkit.decode: temperature, top-k, top-p, greedy, beam search, O(1) work per token."""

from __future__ import annotations

import numpy as np
import pytest

from rnnkit.decode import beam_search, choose, filter_logits, generate
from rnnkit.nn.losses import log_softmax
from rnnkit.tasks.lm.inference import prime_state
from rnnkit.tasks.lm.model import LanguageModel, LMConfig
from rnnkit.text.tokenizers import CharTokenizer

TEXT = "abcabd\n"


def _lm(seed=0):
    tok = CharTokenizer().fit(TEXT)
    cfg = LMConfig(vocab_size=len(tok.vocab), embed_size=6, hidden_size=8, num_layers=2,
                   dtype="float64")
    model = LanguageModel(cfg, rng=np.random.default_rng(seed)).eval()
    for p in model.parameters().values():  # larger weights: peaked, varied distributions
        p *= 3.0
    return model, tok


class Counting:
    """Wraps ``model.step`` and counts calls and tokens fed."""

    def __init__(self, model):
        self.step, self.calls, self.tokens = model.step, 0, 0

    def __call__(self, ids, state):
        self.calls += 1
        self.tokens += len(ids)
        return self.step(ids, state)


def test_filter_logits_top_k_and_top_p():
    p = np.array([0.05, 0.5, 0.15, 0.3])
    z = np.log(p)
    assert np.isfinite(filter_logits(z, top_k=2)).tolist() == [False, True, False, True]
    # nucleus: the smallest set of most likely tokens whose mass reaches top_p
    assert np.isfinite(filter_logits(z, top_p=0.5)).tolist() == [False, True, False, False]
    assert np.isfinite(filter_logits(z, top_p=0.7)).tolist() == [False, True, False, True]
    assert np.isfinite(filter_logits(z, top_p=0.81)).tolist() == [False, True, True, True]
    assert np.isfinite(filter_logits(z, top_p=1.0)).all()
    both = filter_logits(z, top_k=3, top_p=0.99)
    assert np.isfinite(both).tolist() == [False, True, True, True]
    np.testing.assert_array_equal(filter_logits(z, top_k=2)[[1, 3]], z[[1, 3]])


def test_choose_greedy_top_k_one_and_sampling_frequencies():
    rng = np.random.default_rng(0)
    z = np.array([0.1, 2.0, -1.0, 1.5])
    assert choose(z, rng, temperature=0) == 1
    assert all(choose(z, rng, temperature=5.0, top_k=1) == 1 for _ in range(50))
    draws = np.bincount([choose(z, rng, temperature=2.0) for _ in range(4000)], minlength=4)
    want = np.exp(z / 2.0) / np.exp(z / 2.0).sum()
    np.testing.assert_allclose(draws / 4000, want, atol=0.03)
    nucleus = {choose(z, rng, top_p=0.6) for _ in range(200)}
    assert nucleus == {1, 3}
    for bad, match in [({"temperature": -1}, "temperature"), ({"top_p": 0.0}, "top_p"),
                       ({"top_k": -2}, "top_k")]:
        with pytest.raises(ValueError, match=match):
            choose(z, rng, **bad)


def test_temperature_zero_follows_the_argmax_path():
    model, tok = _lm()
    logits, state = prime_state(model, tok, "ab")
    got = list(generate(model.step, state, 0, 12, np.random.default_rng(0), temperature=0,
                        logits=logits))
    # the same path by hand: feed the argmax back each step
    logits, state = prime_state(model, tok, "ab")
    want = []
    for _ in range(12):
        want.append(int(np.argmax(logits[0])))
        logits, state = model.step(np.array([want[-1]]), state)
    assert got == want
    # top-k = 1 is greedy at any temperature
    logits, state = prime_state(model, tok, "ab")
    assert list(generate(model.step, state, 0, 12, np.random.default_rng(1), temperature=3.0,
                         top_k=1, logits=logits)) == want


def test_sampling_is_reproducible_with_a_seed():
    model, tok = _lm()

    def run(seed):
        logits, state = prime_state(model, tok, "a")
        return list(generate(model.step, state, 0, 30, np.random.default_rng(seed),
                             logits=logits))

    assert run(4) == run(4)
    assert run(4) != run(5)


def test_generation_never_reruns_the_prefix():
    model, tok = _lm()
    prime = "abcab"
    for length in (1, 10, 40):
        step = Counting(model)
        model.step, original = step, model.step
        try:
            logits, state = prime_state(model, tok, prime)
            out = list(generate(step, state, 0, length, np.random.default_rng(0),
                                logits=logits))
        finally:
            model.step = original
        assert len(out) == length
        # one step per prime token, one per generated token but the last; batch of one
        assert step.calls == len(prime) + length - 1 and step.tokens == step.calls


def test_generate_stops_at_stop_token_and_feeds_first():
    model, _ = _lm()
    step = Counting(model)
    greedy = list(generate(step, model.initial_state(1), 3, 5, None, temperature=0))
    assert step.calls == 1 + 4  # `first`, then one per token but the last
    out = list(generate(model.step, model.initial_state(1), 3, 50, None, temperature=0,
                        stop=greedy[2]))
    assert out[-1] == greedy[2] and len(out) <= 3


def _sequence_logp(model, state, logits, tokens):
    total = 0.0
    for tok in tokens:
        total += log_softmax(logits[0])[tok]
        logits, state = model.step(np.array([tok]), state)
    return total


def test_beam_one_is_greedy_and_beams_are_sorted_by_exact_scores():
    model, tok = _lm()
    logits, state = prime_state(model, tok, "ab")
    greedy = list(generate(model.step, state, 0, 8, None, temperature=0, logits=logits))
    hyps = beam_search(model.step, state, 0, 1, 8, logits=logits)
    assert len(hyps) == 1 and hyps[0].tokens == greedy
    hyps = beam_search(model.step, state, 0, 4, 8, logits=logits)
    assert len(hyps) == 4 and len({tuple(h.tokens) for h in hyps}) == 4
    scores = [h.logp for h in hyps]
    assert scores == sorted(scores, reverse=True)
    for h in hyps:  # each score is the model's log probability of that continuation
        assert abs(h.logp - _sequence_logp(model, state, logits, h.tokens)) < 1e-9
    assert hyps[0].logp >= _sequence_logp(model, state, logits, greedy) - 1e-12


def _toy_step(ids, state):
    """V = 3 (token 2 is eos); the next-token distribution depends on the token fed only.
    At the start (-1): p(0) = 0.6, p(1) = 0.4; after 0: uniform; after 1: p(0) = 0.9;
    after eos: eos again.  The state (K, 1) is the last token, kept to check reordering."""
    table = {-1: [0.6, 0.4, 1e-9], 0: [1 / 3, 1 / 3, 1 / 3], 1: [0.9, 0.05, 0.05],
             2: [1e-9, 1e-9, 1.0]}
    assert state.shape == (1, len(ids))
    return np.log(np.array([table[int(i)] for i in ids])), np.asarray(ids)[None, :]


def test_beam_search_beats_greedy_on_a_toy_model():
    start = np.array([[-1]])
    greedy = beam_search(_toy_step, start, -1, 1, 2)
    best = beam_search(_toy_step, start, -1, 2, 2)
    assert greedy[0].tokens[0] == 0 and abs(greedy[0].logp - np.log(0.6 / 3)) < 1e-6
    assert best[0].tokens == [1, 0] and abs(best[0].logp - np.log(0.36)) < 1e-6
    # with an eos token, finished hypotheses keep their score (the eos counted in logp and
    # in the length, not in tokens)
    hyps = beam_search(_toy_step, start, -1, 3, 5, eos=2)
    assert [h.logp for h in hyps] == sorted((h.logp for h in hyps), reverse=True)
    assert any(h.finished for h in hyps)
    assert all(2 not in h.tokens and len(h) == len(h.tokens) + h.finished for h in hyps)
    # [0, eos] (p = 0.2) ties [0, 0] and [0, 1] but ranks 4th of the candidates at step 2, so
    # beam 3 drops it: only an eos among the `beam` best candidates finishes
    assert [0] not in [h.tokens for h in hyps if h.finished]
    wide = beam_search(_toy_step, start, -1, 4, 5, eos=2)[0]  # ranks 4th of 8: kept
    assert wide.tokens == [0] and wide.finished and abs(wide.logp - np.log(0.2)) < 1e-6
    with pytest.raises(ValueError, match="beam width must be at least 1"):
        beam_search(_toy_step, start, -1, 0, 2)
