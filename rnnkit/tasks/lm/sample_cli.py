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
    p.add_argument("--prime", default="", help="text to start from (default: none)")
    p.add_argument("--length", type=int, default=500, help="tokens to generate")
    p.add_argument("--temperature", type=float, default=1.0,
                   help="divide the logits by this; 0 means greedy")
    p.add_argument("--top-k", type=int, default=0, help="sample among the K most likely (0: all)")
    p.add_argument("--top-p", type=float, default=1.0,
                   help="nucleus sampling: the smallest set of tokens with this much "
                        "probability (1: all)")
    p.add_argument("--beam", type=int, default=0,
                   help="beam search with this width instead of sampling (0: off)")
    p.add_argument("--seed", type=int, default=None,
                   help="random seed (default: a different sample every time)")


def prime_state(model, tokenizer, prime: str, warn_prefix: str = "rnnkit sample"):
    """Run the prime through ``model.step`` once, from the zero state; returns the logits
    of its last step (1, V) and the state.  Without a prime a line start is fed: a newline
    (character level) or ``<eos>`` (word level), the token that precedes a line in training.
    Unknown characters or words become ``<unk>``, with a warning on stderr."""
    vocab = tokenizer.vocab
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ids = tokenizer.encode(prime) if prime else np.zeros(0, dtype=np.int64)
    for w in caught:
        print(f"{warn_prefix}: warning: prime: {w.message}", file=sys.stderr)
    if tokenizer.level == "word" and len(ids) and ids[-1] == vocab.eos_id and \
            not prime.endswith("\n"):
        ids = ids[:-1]  # the word tokenizer ends every line with <eos>; a prime continues it
    if len(ids) == 0:
        if tokenizer.level == "word":
            start = vocab.eos_id
        else:
            start = vocab.index("\n") if "\n" in vocab else vocab.bos_id
        ids = np.array([start], dtype=np.int64)
    state = model.initial_state(1)
    logits = None
    for tok in ids:  # the step function: no cache, the same path generation uses
        logits, state = model.step(np.array([tok]), state)
    return logits, state


def sample_text(checkpoint, prime="", length=500, temperature=1.0, top_k=0, top_p=1.0,
                seed=None, beam=0, stream=None) -> str:
    from ...decode import beam_search, check_sampling, generate
    from .inference import load_lm

    if length < 0:
        raise ValueError(f"--length must be >= 0, got {length}")
    if beam < 0:
        raise ValueError(f"--beam must be >= 0, got {beam}")
    try:
        check_sampling(temperature, top_k, top_p)
    except ValueError as e:  # name the options as the command line spells them
        raise ValueError("--" + str(e).replace("_", "-")) from None
    model, tokenizer, _ = load_lm(checkpoint)
    logits, state = prime_state(model, tokenizer, prime)
    # <pad> and <bos> are never training targets: never emit them
    # (a character vocabulary is built from the whole text, so <unk> never was one either)
    banned = [i for i in (tokenizer.vocab.pad_id, tokenizer.vocab.bos_id) if i is not None]
    if tokenizer.level == "char":
        banned.append(tokenizer.vocab.unk_id)

    def step(ids, state):
        out, state = model.step(ids, state)
        out[:, banned] = -np.inf
        return out, state

    logits = logits.copy()
    logits[:, banned] = -np.inf
    vocab = tokenizer.vocab
    word = tokenizer.level == "word"
    sep = " " if word else ""
    pieces = ["\n"] if not prime or prime[-1].isspace() else [prime[-1]]  # word spacing

    def emit(tok):
        text = "\n" if word and tok == vocab.eos_id else tokenizer.decode([tok])
        piece = text if (not word or text == "\n" or pieces[-1] == "\n") else sep + text
        pieces.append(text)
        if stream is not None:
            stream.write(piece)
            stream.flush()
        return piece

    if stream is not None and prime:
        stream.write(prime)
    out = []
    if beam:
        hyps = beam_search(step, state, 0, beam, length, logits=logits, alpha=0.0)
        for tok in hyps[0].tokens:
            out.append(emit(tok))
    else:
        rng = np.random.default_rng(seed)
        for tok in generate(step, state, 0, length, rng, temperature=temperature,
                            top_k=top_k, top_p=top_p, logits=logits):
            out.append(emit(tok))
    return prime + "".join(out)


def run(args) -> int:
    sample_text(args.checkpoint, args.prime, args.length, args.temperature, args.top_k,
                args.top_p, args.seed, args.beam, stream=sys.stdout)
    sys.stdout.write("\n")
    return 0
