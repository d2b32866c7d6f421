"""Tagger checkpoints: loading, prediction and evaluation.

>>> # model, vocab = load_tagger("runs/upos")[:2]
>>> # tag_sentences(model, vocab, [["I", "saw", "her"]])       # [["PRON", "VERB", "PRON"]]
>>> # tag_probabilities(model, vocab, [["I", "saw"]])[0].shape  # (2, number of tags)
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from ...errors import CheckpointError
from ...text.tagged import read_tagged
from .model import SequenceTagger, TaggerConfig
from .task import EncodedSentences, TaggerVocab, evaluate_tagger, predict_tags


def load_tagger(path):
    """``(model, vocab, checkpoint)`` from a tagger checkpoint or run directory."""
    from ...train.checkpoint import load_checkpoint

    ck = load_checkpoint(path, kind="tagger", weights_only=True)
    cfg, vocab = ck.read(lambda: (TaggerConfig.from_dict(ck.config["model"]),
                                  TaggerVocab.from_dict(ck.vocab)))
    n_chars = 0 if vocab.chars is None else len(vocab.chars)
    if (len(vocab.words), len(vocab.tags), n_chars) != (
            cfg.vocab_size, cfg.num_tags, cfg.char_vocab_size):
        raise CheckpointError(f"{ck.path}: vocabulary does not match the model")
    return ck.restore(SequenceTagger, cfg), vocab, ck


def tag_sentences(model: SequenceTagger, vocab: TaggerVocab, sentences,
                  batch_size: int = 64) -> list[list[str]]:
    """The predicted tags of each sentence (a list of words, none empty)."""
    enc = EncodedSentences(vocab, vocab.char_table(), sentences)
    preds, _, _ = predict_tags(model, enc, batch_size)
    return [[vocab.tags[k] for k in p] for p in preds]


def tag_probabilities(model: SequenceTagger, vocab: TaggerVocab, sentences,
                      batch_size: int = 64) -> list[np.ndarray]:
    """The tag probabilities of each word: one array (T, K) per sentence (a list of words,
    none empty); their argmax is what :func:`tag_sentences` returns."""
    from ...nn.losses import softmax
    from ...text.batching import bucket_batches

    enc = EncodedSentences(vocab, vocab.char_table(), sentences)
    out: list = [None] * len(enc.lengths)
    for idx in bucket_batches(enc.lengths, batch_size):
        x, lengths, chars, _ = enc.batch(idx)
        logits, _ = model.forward(x, lengths, chars)  # (B, T, K)
        probs = softmax(np.asarray(logits, dtype=np.float64))
        for b, j in enumerate(idx):
            out[j] = probs[b, : lengths[b]]
    return out


class TaggerService:
    """A tagger checkpoint behind ``rnnkit serve``: ``predict(texts)`` gives each text's words
    with their tags and the tags' probabilities.  Safe to share between threads."""

    endpoints = ("predict",)

    def __init__(self, path):
        self.model, self.vocab, self.checkpoint = load_tagger(path)
        self._lock = threading.Lock()

    def info(self) -> dict:
        return {"vocab_size": len(self.vocab.words), "tags": list(self.vocab.tags)}

    def predict(self, texts: list[str]) -> list[dict]:
        sentences = [t.split() for t in texts]
        if not all(sentences):
            raise ValueError("a text to tag has no words")
        with self._lock:
            probs = tag_probabilities(self.model, self.vocab, sentences)
        out = []
        for words, p in zip(sentences, probs):
            best = p.argmax(axis=1)
            out.append({"tokens": words, "tags": [self.vocab.tags[k] for k in best],
                        "probabilities": [round(float(p[t, k]), 6) for t, k in enumerate(best)]})
        return out


def evaluate_file(path, file, *, encoding: str = "utf-8", fmt: str | None = None,
                  batch_size: int = 64) -> dict:
    """Token accuracy (and span P/R/F1 for BIO tags) of a checkpoint on a tagged file; the
    tag column is the one the model was trained on.  A tag the model never saw is an error
    naming the file and line."""
    model, vocab, ck = load_tagger(path)
    info = ck.config.get("data", {})
    data = read_tagged(Path(file), fmt or "auto", column=info.get("column", "upos"),
                       encoding=encoding, tags=vocab.tags)
    enc = EncodedSentences(vocab, vocab.char_table(), data.sentences, vocab.encode_tags(data))
    r = evaluate_tagger(model, vocab, enc, batch_size)
    figures = {"sentences": len(data), "tokens": r["tokens"], "accuracy": r["accuracy"]}
    figures["oov tokens"] = r["oov_tokens"]
    if "oov_accuracy" in r:
        figures["oov accuracy"] = r["oov_accuracy"]
    figures["loss"] = r["loss"]
    for k in ("span_precision", "span_recall", "span_f1"):
        if k in r:
            figures[k.replace("_", " ")] = r[k]
    return figures


def evaluate_checkpoint(path, args) -> dict:
    """The ``rnnkit eval`` entry point for checkpoints of kind "tagger"."""
    return evaluate_file(path, args.file, encoding=getattr(args, "encoding", "utf-8"),
                         fmt=getattr(args, "format", None),
                         batch_size=max(int(getattr(args, "batch_size", 64) or 64), 64))


def predictor(path, args):
    """For ``rnnkit predict``: ``(answer, None)``; ``answer(list of sentences)`` gives
    ``word/TAG ...`` per sentence (``args.conll``: ``word<TAB>TAG`` lines and a blank line)."""
    model, vocab, _ = load_tagger(path)

    def answer(tokens_list):
        tags = tag_sentences(model, vocab, tokens_list, args.batch_size)
        if args.conll:
            return ["\n".join(f"{w}\t{t}" for w, t in zip(ws, ts)) + "\n"
                    for ws, ts in zip(tokens_list, tags)]
        return [" ".join(f"{w}/{t}" for w, t in zip(ws, ts)) for ws, ts in zip(tokens_list, tags)]

    return answer, None
