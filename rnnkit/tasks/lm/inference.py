"""Language-model checkpoints (kind ``"lm"``): loading, evaluation on a text, generation
(:func:`sample_pieces`, used by ``rnnkit sample`` and ``rnnkit serve``), and the two calls
``rnnkit inspect`` makes on a loaded model.

Two model classes share the kind: :class:`~rnnkit.tasks.lm.model.LanguageModel` and, when
``config["model"]["cell"]`` is ``"output-recurrent"``,
:class:`~rnnkit.tasks.lm.output_recurrent.OutputRecurrentLM`; :func:`load_lm` picks the class,
so neither model module needs the other.
"""

from __future__ import annotations

import sys
import threading
import warnings
from collections.abc import Callable, Iterator

import numpy as np

from ...errors import CheckpointError
from ...train.checkpoint import load_checkpoint
from .model import LanguageModel, LMConfig
from .output_recurrent import ORConfig, OutputRecurrentLM

OUTPUT_RECURRENT = "output-recurrent"


def load_lm(path):
    """``(model, tokenizer, checkpoint)`` from an ``"lm"`` checkpoint or run directory, the
    model in evaluation mode (either language-model class)."""
    ck = load_checkpoint(path, kind="lm", weights_only=True)
    if ck.config.get("model", {}).get("cell") == OUTPUT_RECURRENT:
        return build_from_checkpoint(ck, ORConfig, OutputRecurrentLM)
    return build_from_checkpoint(ck, LMConfig, LanguageModel)


def build_from_checkpoint(ck, config_cls, model_cls):
    """``(model, tokenizer, ck)`` from a loaded ``"lm"`` checkpoint, the model in evaluation
    mode; shared by every language-model class."""
    from ...text.tokenizers import tokenizer_from_dict

    cfg, tokenizer = ck.read(lambda: (config_cls.from_dict(ck.config["model"]),
                                      tokenizer_from_dict(ck.vocab)))
    if len(tokenizer.vocab) != cfg.vocab_size:
        raise CheckpointError(f"{ck.path}: vocabulary has {len(tokenizer.vocab)} tokens but the "
                              f"model expects {cfg.vocab_size}")
    return ck.restore(model_cls, cfg), tokenizer, ck


def evaluate_file(path, file, encoding="utf-8", batch_size=10, bptt=64) -> dict:
    """Loss, perplexity (and bits per character) of the checkpoint ``path`` on a text file."""
    from ...text.io import read_text
    from .task import evaluate_lm

    model, tokenizer, _ = load_lm(path)
    text = read_text(file, encoding)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ids = tokenizer.encode(text)
    for w in caught:
        print(f"rnnkit eval: warning: {w.message}", file=sys.stderr)
    if len(ids) < 2:
        raise ValueError(f"{file}: needs at least 2 tokens to evaluate, got {len(ids)}")
    r = evaluate_lm(model, ids, batch_size, bptt)
    figures = {"loss": r["loss"], "perplexity": r["ppl"]}
    if tokenizer.level == "char":
        figures["bits per char"] = r["bits"]
    figures["tokens"] = r["tokens"]
    return figures


def evaluate_checkpoint(path, args) -> dict:
    """The ``rnnkit eval`` entry point for checkpoints of kind ``"lm"``."""
    return evaluate_file(path, args.file, args.encoding, args.batch_size, args.bptt)


def inspect_forward(model, ids) -> None:
    """Run the model on token ids (B, T) (``rnnkit inspect gates`` and the viewer)."""
    model.forward(ids)


def inspect_loss(model, batch, loss: str) -> None:
    """Forward and backward of the loss on ``batch = (ids, targets)``: at the last step only
    (``loss="last"``) or over all steps (``"sum"``)."""
    from ...nn.losses import softmax_cross_entropy

    ids, targets = batch
    logits, _, cache = model.forward(ids)
    mask = None
    if loss == "last":
        mask = np.zeros(np.shape(targets), dtype=logits.dtype)
        mask[:, -1] = 1
    _, dlogits, _ = softmax_cross_entropy(logits, np.asarray(targets), mask)
    model.backward(dlogits, cache)


# -- generation -------------------------------------------------------------------------------
def prime_state(model, tokenizer, prime: str, warn: Callable[[str], None] | None = None):
    """Run the prime through ``model.step`` once, from the zero state; returns the logits
    of its last step (1, V) and the state.  Without a prime a line start is fed: a newline
    (character level) or ``<eos>`` (word level), the token that precedes a line in training.
    Unknown characters or words become ``<unk>``; each warning about them goes to ``warn``
    (default: issued as a Python warning)."""
    vocab = tokenizer.vocab
    with warnings.catch_warnings(record=warn is not None) as caught:
        if warn is not None:
            warnings.simplefilter("always")
        ids = tokenizer.encode(prime) if prime else np.zeros(0, dtype=np.int64)
    for w in caught or ():
        warn(str(w.message))
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


def check_generation(length: int = 500, temperature: float = 1.0, top_k: int = 0,
                     top_p: float = 1.0, beam: int = 0) -> None:
    """Raise ``ValueError`` naming the first argument of :func:`sample_pieces` that is out
    of range."""
    from ...decode import check_sampling

    if length < 0:
        raise ValueError(f"length must be >= 0, got {length}")
    if beam < 0:
        raise ValueError(f"beam must be >= 0, got {beam}")
    check_sampling(temperature, top_k, top_p)


def sample_pieces(model, tokenizer, prime: str = "", length: int = 500, *,
                  temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                  rng=None, beam: int = 0, warn: Callable[[str], None] | None = None,
                  lock: threading.Lock | None = None) -> Iterator[str]:
    """The continuation of ``prime``, yielded as it is produced: one text piece per token
    (a word with the space before it at word level).  ``temperature`` 0 is greedy; ``beam``
    > 0 yields the most likely continuation found by beam search (all at once, at the end).
    ``rng`` seeds the sampling; ``lock``, if given, is held around each model step (so
    several threads can share one model); ``warn`` receives the prime's warnings.

    The arguments are checked and the prime is run before this returns; the tokens come
    one per ``next``.

    >>> # model, tokenizer, _ = load_lm("runs/chars")
    >>> # "".join(sample_pieces(model, tokenizer, "def ", 40, temperature=0.8, rng=0))
    """
    from ...decode import beam_search, generate

    check_generation(length, temperature, top_k, top_p, beam)
    vocab = tokenizer.vocab
    # <pad> and <bos> are never training targets: never emit them
    # (a character vocabulary is built from the whole text, so <unk> never was one either)
    banned = [i for i in (vocab.pad_id, vocab.bos_id) if i is not None]
    if tokenizer.level == "char":
        banned.append(vocab.unk_id)

    def step(ids, state):
        with lock or _NO_LOCK:
            out, state = model.step(ids, state)
        out[:, banned] = -np.inf
        return out, state

    with lock or _NO_LOCK:
        logits, state = prime_state(model, tokenizer, prime, warn)
    logits = logits.copy()
    logits[:, banned] = -np.inf
    if beam:
        tokens = beam_search(step, state, 0, beam, length, logits=logits, alpha=0.0)[0].tokens
    else:
        tokens = generate(step, state, 0, length, np.random.default_rng(rng),
                          temperature=temperature, top_k=top_k, top_p=top_p, logits=logits)
    return _pieces(tokens, tokenizer, prime)


def _pieces(tokens, tokenizer, prime: str) -> Iterator[str]:
    """Token ids -> text pieces: words get a space before them unless they start a line."""
    word = tokenizer.level == "word"
    eos = tokenizer.vocab.eos_id if word else None
    last = "\n" if not prime or prime[-1].isspace() else prime[-1]
    for tok in tokens:
        text = "\n" if word and tok == eos else tokenizer.decode([tok])
        yield text if (not word or text == "\n" or last == "\n") else " " + text
        last = text


def sample_text(checkpoint, prime: str = "", length: int = 500, temperature: float = 1.0,
                top_k: int = 0, top_p: float = 1.0, seed=None, beam: int = 0,
                stream=None, warn_prefix: str = "rnnkit sample") -> str:
    """The prime and its continuation from a language-model checkpoint, also written to
    ``stream`` as it is produced (if given); warnings about the prime go to stderr."""
    model, tokenizer, _ = load_lm(checkpoint)

    def warn(message):
        print(f"{warn_prefix}: warning: prime: {message}", file=sys.stderr)

    pieces = sample_pieces(model, tokenizer, prime, length, temperature=temperature,
                           top_k=top_k, top_p=top_p, rng=seed, beam=beam, warn=warn)
    if stream is not None and prime:
        stream.write(prime)
    out = []
    for piece in pieces:
        out.append(piece)
        if stream is not None:
            stream.write(piece)
            stream.flush()
    return prime + "".join(out)


class LMService:
    """A language-model checkpoint behind ``rnnkit serve``: ``generate(...)`` yields the
    continuation of a prompt piece by piece (see :func:`sample_pieces`).  Safe to share
    between threads: each model step holds the model's lock, so concurrent generations take
    turns token by token."""

    endpoints = ("generate",)

    def __init__(self, path):
        self.model, self.tokenizer, self.checkpoint = load_lm(path)
        self._lock = threading.Lock()

    def info(self) -> dict:
        return {"vocab_size": len(self.tokenizer.vocab), "level": self.tokenizer.level}

    def generate(self, prompt: str = "", length: int = 200, *, temperature: float = 1.0,
                 top_k: int = 0, top_p: float = 1.0, seed=None,
                 warn: Callable[[str], None] | None = None) -> Iterator[str]:
        return sample_pieces(self.model, self.tokenizer, prompt, length,
                             temperature=temperature, top_k=top_k, top_p=top_p, rng=seed,
                             warn=warn, lock=self._lock)


class _NoLock:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


_NO_LOCK = _NoLock()
