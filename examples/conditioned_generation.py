"""One-to-many: generate letter sequences conditioned on a class label.

Four labels, each a pattern that starts from a random letter and runs for 4 to 8 letters::

    up         c d e f g          down       g f e d c
    repeat     c c c c c          zigzag     c d c d c

A :class:`~rnnkit.tasks.lm.conditioned.ConditionedGenerator` (GRU, one-hot label -> initial
state, and the label fed at every step) learns them from 4,000 samples in about 15 seconds;
then, for each label, it samples a few sequences (temperature 0.8) and checks that each follows
its label's pattern::

    python examples/conditioned_generation.py
"""

from __future__ import annotations

import argparse
import string
import time

import numpy as np

from rnnkit.tasks.lm.conditioned import ConditionedConfig, ConditionedGenerator, one_hot
from rnnkit.tasks.seq2seq.task import make_batch
from rnnkit.train.optim import Adam, clip_grad_norm

LABELS = ("up", "down", "repeat", "zigzag")
LETTERS = string.ascii_lowercase
FIRST_ID = 4  # ids 0..3 are <pad> <unk> <bos> <eos>


def make_sequence(label: int, rng: np.random.Generator) -> str:
    n = int(rng.integers(4, 9))
    if label == 0:
        a = int(rng.integers(0, 26 - n))
        return LETTERS[a : a + n]
    if label == 1:
        a = int(rng.integers(n - 1, 26))
        return LETTERS[a - n + 1 : a + 1][::-1]
    a = int(rng.integers(0, 25))
    if label == 2:
        return LETTERS[a] * n
    return "".join(LETTERS[a + (i % 2)] for i in range(n))


def follows(label: int, s: str) -> bool:
    """Does ``s`` follow the pattern of ``label`` (length 4..8 included)?"""
    if not 4 <= len(s) <= 8 or any(c not in LETTERS for c in s):
        return False
    d = np.diff([ord(c) for c in s])
    return [bool((d == 1).all()), bool((d == -1).all()), bool((d == 0).all()),
            bool((d == np.where(np.arange(len(d)) % 2 == 0, 1, -1)).all())][label]


def encode(s: str) -> list[int]:
    return [FIRST_ID + LETTERS.index(c) for c in s]


def decode(ids) -> str:
    return "".join(LETTERS[i - FIRST_ID] for i in ids if i >= FIRST_ID)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=4000)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--show", type=int, default=4, help="samples shown per label")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    rng = np.random.default_rng(args.seed)

    labels = rng.integers(0, len(LABELS), args.samples)
    seqs = [encode(make_sequence(int(k), rng)) for k in labels]
    cfg = ConditionedConfig(vocab_size=FIRST_ID + 26, cond_size=len(LABELS), cell="gru",
                            embed_size=16, hidden_size=64)
    model = ConditionedGenerator(cfg, rng=rng)
    opt = Adam(model.parameters(), lr=5e-3)
    grads = model.grads()
    B = 64
    t0 = time.monotonic()
    for epoch in range(1, args.epochs + 1):
        order = rng.permutation(args.samples)
        total = n_tok = 0
        for lo in range(0, args.samples, B):
            idx = order[lo : lo + B]
            _, _, tgt_in, tgt_out = make_batch([[0]] * len(idx), [seqs[i] for i in idx])
            cond = one_hot(labels[idx], len(LABELS))
            model.zero_grad()
            loss, n = model.loss(cond, tgt_in, tgt_out, rng=rng)
            clip_grad_norm(grads, 1.0)
            opt.step(grads)
            total, n_tok = total + loss * n, n_tok + n
        print(f"epoch {epoch}: loss {total / n_tok:.4f} ({time.monotonic() - t0:.0f} s)")

    ok = shown = 0
    for k, name in enumerate(LABELS):
        cond = one_hot(np.full(50, k), len(LABELS))
        outs = [decode(s) for s in model.generate(cond, max_len=10, temperature=0.8, rng=rng)]
        good = sum(follows(k, s) for s in outs)
        ok += good
        shown += len(outs)
        greedy = decode(model.generate(cond[:1], max_len=10)[0])
        print(f"{name:7s} {good}/50 samples follow the pattern; e.g. "
              f"{' '.join(outs[: args.show])}   (greedy: {greedy})")
    print(f"{ok}/{shown} samples follow their label's pattern")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
