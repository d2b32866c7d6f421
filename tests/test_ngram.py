"""n-gram language models: normalisation, Kneser-Ney by hand, add-k, saving, the CLI entries."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from rnnkit.errors import CheckpointError, ConfigError
from rnnkit.tasks.ngram.model import (
    NGramConfig,
    NGramLM,
    estimate_discounts,
    load_ngram,
    save_ngram,
)

A, B, C, D = 0, 1, 2, 3  # token ids of the hand-worked examples; D never occurs
TINY = [A, B, A, B, C, A]


def _random_stream(seed: int, n: int = 400, V: int = 12) -> np.ndarray:
    # skewed, so that counts of 1, 2, 3 and more all occur
    p = 1.0 / np.arange(1, V + 1)
    return np.random.default_rng(seed).choice(V, size=n, p=p / p.sum())


@pytest.mark.parametrize("smoothing", ["mkn", "kn", "addk"])
@pytest.mark.parametrize("order", [2, 3, 4, 5])
def test_every_distribution_sums_to_one(order, smoothing):
    V = 15  # ids 12..14 never occur in training
    train = _random_stream(order)
    lm = NGramLM(NGramConfig(vocab_size=V, order=order, smoothing=smoothing)).fit(train)
    rng = np.random.default_rng(1)
    contexts = [[], [0], [14], [14, 13, 12, 14], list(train[:order - 1]), list(train[-6:]),
                *(list(rng.integers(0, V, size=order - 1)) for _ in range(20))]
    for ctx in contexts:
        p = lm.prob_dist(ctx)
        assert p.shape == (V,)
        assert (p > 0).all()
        assert abs(p.sum() - 1.0) < 1e-12, (ctx, p.sum())


@pytest.mark.parametrize("smoothing", ["mkn", "kn", "addk"])
@pytest.mark.parametrize("order", [1, 2, 3, 5])
def test_logprobs_agree_with_prob_dist(order, smoothing):
    V = 14
    lm = NGramLM(NGramConfig(vocab_size=V, order=order, smoothing=smoothing))
    lm.fit(_random_stream(7))
    test = np.concatenate([_random_stream(8, 40), np.random.default_rng(2).integers(0, V, 40)])
    lp = lm.logprobs(test)
    want = [np.log(lm.prob_dist(test[:i])[test[i]]) for i in range(1, len(test))]
    np.testing.assert_allclose(lp, want, rtol=0, atol=1e-12)
    assert lm.log_prob(test) == pytest.approx(lp.sum())
    assert lm.perplexity(test) == pytest.approx(np.exp(-lp.mean()))


def test_kneser_ney_by_hand():
    """Bigram interpolated KN on ``a b a b c a`` with D = 1/2 at both orders.

    Continuation counts N1+(. w): a 2 (after b, c), b 1, c 1, d 0; their sum is 4 and 3 types
    are seen, so ``P1(w) = (N1+(. w) - D)^+ / 4 + 3 D / 4 * 1/4``.  After ``b`` the bigram
    counts are (b a) 1 and (b c) 1: ``P(w | b) = (c(b w) - D)^+ / 2 + 2 D / 2 * P1(w)``.
    """
    lm = NGramLM(NGramConfig(vocab_size=4, order=2, smoothing="kn", discount=0.5)).fit(TINY)
    p1 = np.array([1.5 + 0.375, 0.5 + 0.375, 0.5 + 0.375, 0.375]) / 4
    np.testing.assert_allclose(lm.prob_dist([]), p1, atol=1e-15)
    np.testing.assert_allclose(p1, [0.46875, 0.21875, 0.21875, 0.09375])
    p_b = np.array([0.5 + p1[A], p1[B], 0.5 + p1[C], p1[D]]) / 2
    np.testing.assert_allclose(lm.prob_dist([B]), p_b, atol=1e-15)
    # after a: (a b) twice, so P(w | a) = (2 - D)^+ / 2 [w = b] + D / 2 * P1(w)
    p_a = np.array([0.25 * p1[A], 0.75 + 0.25 * p1[B], 0.25 * p1[C], 0.25 * p1[D]])
    np.testing.assert_allclose(lm.prob_dist([A]), p_a, atol=1e-15)
    # d was never seen: its context backs off to P1 entirely
    np.testing.assert_allclose(lm.prob_dist([D]), p1, atol=1e-15)
    # the stream form scores every token after the first: b|a, a|b, b|a, c|b, a|c
    lp = lm.logprobs(TINY)
    p_c = 0.5 * np.eye(4)[A] + 0.5 * p1  # after c: (c a) once
    np.testing.assert_allclose(lp, np.log([p_a[B], p_b[A], p_a[B], p_b[C], p_c[A]]))


def test_discounts_estimated_from_count_of_counts():
    lm = NGramLM(NGramConfig(vocab_size=4, order=2, smoothing="kn")).fit(TINY)
    # unigram level: continuation counts {2, 1, 1} -> n1 = 2, n2 = 1, D = 2 / (2 + 2)
    # bigram level: raw counts {2, 1, 1, 1} -> n1 = 3, n2 = 1, D = 3 / (3 + 2)
    np.testing.assert_allclose(lm.discounts, [[0.5] * 3, [0.6] * 3])
    # modified KN: n1..n4 = 4, 2, 1, 1 -> Y = 1/2, D1 = 1/2, D2 = 5/4, D3+ = 1
    counts = np.array([1, 1, 1, 1, 2, 2, 3, 4, 7])
    np.testing.assert_allclose(estimate_discounts(counts, modified=True), [0.5, 1.25, 1.0])
    np.testing.assert_allclose(estimate_discounts(counts, modified=False), [0.5] * 3)


def test_continuation_counts_at_lower_orders():
    # a b c a b d: (a b) ends twice, once after c and once at the start -> N1+(. a b) = 1
    lm = NGramLM(NGramConfig(vocab_size=4, order=3)).fit([A, B, C, A, B, D])
    V = 4
    got = {(int(k // V), int(k % V)): int(c) for k, c in zip(lm.keys[1], lm.counts[1])}
    first = {int(u): i for i, u in enumerate(lm.keys[0])}  # unigram id -> index
    assert got == {(first[A], B): 1, (first[B], C): 1, (first[C], A): 1, (first[B], D): 1}
    # the highest order keeps raw counts
    assert lm.counts[2].tolist() == [1, 1, 1, 1]


def test_add_k_by_hand():
    lm = NGramLM(NGramConfig(vocab_size=4, order=2, smoothing="addk", k=0.5)).fit(TINY)
    # after b: (b a) 1, (b c) 1, c(b) = 2 -> (c + 1/2) / (2 + 2)
    np.testing.assert_allclose(lm.prob_dist([B]), [1.5 / 4, 0.5 / 4, 1.5 / 4, 0.5 / 4])
    np.testing.assert_allclose(lm.prob_dist([D]), [0.25] * 4)  # unseen context: uniform
    np.testing.assert_allclose(lm.prob_dist([]), (np.array([3, 2, 1, 0]) + 0.5) / 8)


def test_save_load_round_trip(tmp_path):
    from rnnkit.text.tokenizers import make_tokenizer
    from rnnkit.train.checkpoint import load_checkpoint

    tok = make_tokenizer("char").fit("abcabcabd\n")
    ids = tok.encode("abcabcabd\nabcab\n")
    lm = NGramLM(NGramConfig(vocab_size=len(tok.vocab), order=3)).fit(ids)
    path = save_ngram(tmp_path / "ck", lm, tok, {"source": "test"})
    ck = load_checkpoint(path)
    assert ck.kind == "ngram"
    assert all(a.dtype.kind in "iuf" for a in ck.weights.values())
    lm2, tok2, _ = load_ngram(path)
    assert tok2.vocab == tok.vocab and lm2.cfg == lm.cfg
    np.testing.assert_array_equal(lm2.logprobs(ids), lm.logprobs(ids))
    with pytest.raises(CheckpointError):
        NGramLM.from_arrays(lm.cfg, {k: v for k, v in lm.state_arrays().items()
                                     if k != "order2.keys"})


def test_bad_inputs():
    with pytest.raises(ConfigError):
        NGramConfig(vocab_size=5, order=0)
    with pytest.raises(ConfigError):
        NGramConfig(vocab_size=5, smoothing="witten-bell")
    with pytest.raises(ConfigError):
        NGramConfig(vocab_size=5, smoothing="mkn", discount=0.5)
    lm = NGramLM(NGramConfig(vocab_size=4, order=2))
    with pytest.raises(ConfigError, match="not fitted"):
        lm.prob_dist([0])
    with pytest.raises(ValueError, match=r"expected ids in 0\.\.3"):
        lm.fit([0, 1, 4])
    lm.fit(TINY)
    with pytest.raises(ValueError, match=r"shape \(N,\)"):
        lm.logprobs([[0, 1]])


def test_sample_is_reproducible_and_greedy_follows_the_mode():
    lm = NGramLM(NGramConfig(vocab_size=4, order=2, smoothing="kn", discount=0.5)).fit(TINY)
    a = lm.sample([A], 10, np.random.default_rng(3))
    b = lm.sample([A], 10, np.random.default_rng(3))
    assert a.tolist() == b.tolist()
    assert lm.sample([A], 3, np.random.default_rng(0), temperature=0).tolist() == [B, A, B]


def test_train_and_eval_entry_points(tmp_path, capsys):
    from rnnkit.cli import evaluate
    from rnnkit.tasks.ngram.cli import add_ngram_arguments, train_ngram_cli

    text = "the cat sat on the mat\nthe dog sat on the log\n" * 20
    (tmp_path / "corpus.txt").write_text(text)
    p = argparse.ArgumentParser()
    add_ngram_arguments(p)
    args = p.parse_args(["--order", "3", "--smoothing", "kn"])
    args.data, args.level, args.out, args.resume = str(tmp_path / "corpus.txt"), "word", \
        tmp_path / "run", False
    args.valid_fraction, args.min_count, args.max_vocab, args.sample_length = 0.1, 1, None, 5
    assert train_ngram_cli(args) == 0
    out = capsys.readouterr()
    assert "checkpoint:" in out.out and "valid perplexity" in out.err
    (tmp_path / "test.txt").write_text("the cat sat on the log\n")
    # `rnnkit eval` finds rnnkit.tasks.ngram.task by the checkpoint's kind
    eval_args = argparse.Namespace(checkpoint=str(tmp_path / "run"),
                                   file=str(tmp_path / "test.txt"), encoding="utf-8",
                                   batch_size=10, bptt=64)
    assert evaluate.run(eval_args) == 0
    lines = dict(line.split(": ") for line in capsys.readouterr().out.strip().splitlines())
    assert float(lines["perplexity"]) < 10 and lines["tokens"] == "6"
