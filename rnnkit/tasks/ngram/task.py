"""Counted n-gram language models as a task: the corpus (by the rules of ``rnnkit train``),
fitting and saving (:func:`train_ngram`), and evaluation for ``rnnkit eval``
(:func:`evaluate_checkpoint`, registered for the kind ``"ngram"`` in
:data:`rnnkit.tasks.REGISTRY`)."""

from __future__ import annotations

import sys
import time
import warnings

import numpy as np


def load_texts(args):
    """``(texts, level, info)`` from the data options, by the rules of ``rnnkit train``
    (:func:`rnnkit.tasks.lm.data.load_texts`)."""
    from ..lm.data import load_texts as load_lm_texts

    return load_lm_texts(getattr(args, "data", None), level=getattr(args, "level", None),
                         encoding=getattr(args, "encoding", "utf-8"),
                         valid_fraction=getattr(args, "valid_fraction", None))


def _encode(tokenizer, text, who: str):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ids = tokenizer.encode(text)
    for w in caught:
        print(f"{who}: warning: {w.message}", file=sys.stderr)
    return ids


def fit_ngram(train_ids, vocab_size: int, *, order: int = 5, smoothing: str = "mkn",
              k: float = 1.0, discount: float | None = None):
    """An :class:`~rnnkit.tasks.ngram.model.NGramLM` fitted on ``train_ids``."""
    from .model import NGramConfig, NGramLM

    cfg = NGramConfig(vocab_size=vocab_size, order=order, smoothing=smoothing, k=k,
                      discount=discount)
    return NGramLM(cfg).fit(train_ids)


def train_ngram(texts: dict, level: str, info: dict, out, *, order: int = 5,
                smoothing: str = "mkn", k: float = 1.0, discount: float | None = None,
                min_count: int = 1, max_vocab: int | None = None, sample_length: int = 0,
                seed: int = 0, who: str = "rnnkit train"):
    """Count an n-gram model on ``texts["train"]``, report valid/test perplexity on stderr,
    save it as ``out/best`` and print a sample of ``sample_length`` tokens; returns the
    model."""
    from ...text.tokenizers import make_tokenizer
    from .model import save_ngram

    tokenizer = make_tokenizer(level).fit(texts["train"], min_count=min_count,
                                          max_size=max_vocab)
    ids = {name: _encode(tokenizer, text, who) for name, text in texts.items() if text}
    t0 = time.perf_counter()
    model = fit_ngram(ids["train"], len(tokenizer.vocab), order=order, smoothing=smoothing,
                      k=k, discount=discount)
    seconds = time.perf_counter() - t0
    sizes = model.num_ngrams()
    print(f"{who}: {level}-level {order}-gram ({model.cfg.smoothing}), vocab "
          f"{model.cfg.vocab_size}, {sum(sizes):,} n-grams ({', '.join(map(str, sizes))}) from "
          f"{len(ids['train']):,} training tokens in {seconds:.1f}s -> {out}", file=sys.stderr)
    for split in ("valid", "test"):
        if split in ids and len(ids[split]) >= 2:
            print(f"{split} perplexity: {model.perplexity(ids[split]):.2f}", file=sys.stderr)
    path = save_ngram(out / "best", model, tokenizer, info)
    print(f"checkpoint: {path}")
    if sample_length > 0:
        print("sample:")
        print(tokenizer.decode(model.sample([], sample_length, np.random.default_rng(seed),
                                            temperature=0.8)))
    return model


def evaluate_file(path, file, encoding: str = "utf-8") -> dict:
    """Figures of the n-gram checkpoint ``path`` on a text file (perplexity, bits per char)."""
    import math

    from ...text.io import read_text
    from .model import load_ngram

    model, tokenizer, _ = load_ngram(path)
    if tokenizer is None:
        raise ValueError(f"{path}: the checkpoint has no vocabulary; cannot read text with it")
    ids = _encode(tokenizer, read_text(file, encoding), "rnnkit eval")
    if len(ids) < 2:
        raise ValueError(f"{file}: needs at least 2 tokens to evaluate, got {len(ids)}")
    loss = -float(model.logprobs(ids).mean())
    figures = {"loss": loss, "perplexity": math.exp(loss) if loss < 700 else math.inf}
    if tokenizer.level == "char":
        figures["bits per char"] = loss / math.log(2)
    figures["tokens"] = len(ids) - 1
    return figures


def evaluate_checkpoint(path, args) -> dict:
    """Entry point of ``rnnkit eval`` for checkpoints of kind ``"ngram"``."""
    return evaluate_file(path, args.file, getattr(args, "encoding", "utf-8"))
