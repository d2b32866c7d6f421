"""Generate text from a language-model checkpoint, streaming it as it is produced.

Sampling carries the recurrent state from token to token (O(1) per token); ``--temperature 0``
is greedy; ``--beam K`` returns the most likely continuation found by beam search.
"""

from __future__ import annotations

import sys
import warnings

import numpy as np


def add_arguments(p) -> None:
    p.add_argument("checkpoint", help="checkpoint directory or run directory")
    p.add_argument("--prime", default="", help="text to start from")
    p.add_argument("--length", type=int, default=500, help="tokens to generate")
    p.add_argument("--temperature", type=float, default=1.0, help="0 means greedy")
    p.add_argument("--top-k", type=int, default=0, help="sample among the K most likely (0: all)")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass")
    p.add_argument("--beam", type=int, default=0,
                   help="beam search with this width instead of sampling (0: off)")
    p.add_argument("--seed", type=int, default=None, help="random seed")


def prime_state(model, tokenizer, prime: str):
    """Run the prime through the model once; returns (logits of the last step, state)."""
    vocab = tokenizer.vocab
    start = vocab.eos_id if tokenizer.level == "word" else vocab.bos_id
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ids = tokenizer.encode(prime) if prime else np.zeros(0, dtype=np.int64)
    for w in caught:
        print(f"rnnkit sample: warning: {w.message}", file=sys.stderr)
    if tokenizer.level == "word" and len(ids) and ids[-1] == vocab.eos_id and \
            not prime.endswith("\n"):
        ids = ids[:-1]  # the word tokenizer ends every line with <eos>; a prime continues it
    ids = np.concatenate([[start], ids]).astype(np.int64)
    state = model.initial_state(1)
    logits = None
    for tok in ids:  # the step function: no cache, the same path generation uses
        logits, state = model.step(np.array([tok]), state)
    return logits, state


def sample_text(checkpoint, prime="", length=500, temperature=1.0, top_k=0, top_p=1.0,
                seed=None, beam=0, stream=None) -> str:
    from ..models.lm import load_lm
    from ..sampling import beam_search, generate

    if length < 0:
        raise ValueError(f"--length must be >= 0, got {length}")
    model, tokenizer, _ = load_lm(checkpoint)
    logits, state = prime_state(model, tokenizer, prime)
    vocab = tokenizer.vocab
    word = tokenizer.level == "word"
    sep = " " if word else ""
    pieces = []

    def emit(tok):
        text = "\n" if word and tok == vocab.eos_id else tokenizer.decode([tok])
        piece = text if (not word or text == "\n" or not pieces or pieces[-1] == "\n") \
            else sep + text
        pieces.append(text)
        if stream is not None:
            stream.write(piece)
            stream.flush()
        return piece

    if stream is not None and prime:
        stream.write(prime)
    out = []
    if beam:
        hyps = beam_search(model.step, state, 0, beam, length, logits=logits, alpha=0.0)
        for tok in hyps[0].tokens:
            out.append(emit(tok))
    else:
        rng = np.random.default_rng(seed)
        for tok in generate(model.step, state, 0, length, rng, temperature=temperature,
                            top_k=top_k, top_p=top_p, logits=logits):
            out.append(emit(tok))
    return prime + "".join(out)


def run(args) -> int:
    sample_text(args.checkpoint, args.prime, args.length, args.temperature, args.top_k,
                args.top_p, args.seed, args.beam, stream=sys.stdout)
    sys.stdout.write("\n")
    return 0
