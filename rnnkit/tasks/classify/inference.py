"""Classifier checkpoints: loading, prediction and evaluation.

>>> # model, vocab = load_classifier("runs/sst2")             # best/ of a run directory
>>> # predict_texts(model, vocab, [["a", "fine", "film"]])     # [("1", 0.93)]
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from ...errors import CheckpointError
from ...metrics import format_confusion
from ...text.batching import bucket_batches, pad_batch
from ...text.classification import read_classification
from .model import ClassifierConfig, SequenceClassifier
from .task import ClassifierVocab, evaluate_classifier


def load_classifier(path):
    """``(model, vocab, checkpoint)`` from a classifier checkpoint or run directory."""
    from ...train.checkpoint import load_checkpoint

    ck = load_checkpoint(path, kind="classifier", weights_only=True)
    cfg, vocab = ck.read(lambda: (ClassifierConfig.from_dict(ck.config["model"]),
                                  ClassifierVocab.from_dict(ck.vocab)))
    if len(vocab.words) != cfg.vocab_size or len(vocab.labels) != cfg.num_classes:
        raise CheckpointError(f"{ck.path}: vocabulary ({len(vocab.words)} words, "
                              f"{len(vocab.labels)} labels) does not match the model "
                              f"({cfg.vocab_size}, {cfg.num_classes})")
    return ck.restore(SequenceClassifier, cfg), vocab, ck


def predict_proba(model: SequenceClassifier, vocab: ClassifierVocab, texts,
                  batch_size: int = 64) -> np.ndarray:
    """Class probabilities (N, C) for ``texts`` (lists of tokens, none empty)."""
    ids = vocab.encode_texts(texts)
    probs = np.empty((len(ids), model.cfg.num_classes))
    for idx in bucket_batches([len(s) for s in ids], batch_size):
        x, lengths = pad_batch([ids[j] for j in idx])
        probs[idx] = model.predict_proba(x, lengths)
    return probs


def predict_texts(model, vocab, texts, batch_size: int = 64) -> list[tuple[str, float]]:
    """``(label, probability)`` of the most likely class of each text."""
    probs = predict_proba(model, vocab, texts, batch_size)
    best = probs.argmax(axis=1)
    return [(vocab.labels[k], float(probs[i, k])) for i, k in enumerate(best)]


def label_probabilities(model, vocab, texts, batch_size: int = 64) -> list[dict]:
    """Each text's most likely ``label``, its ``probability``, and every class's
    ``probabilities`` (``{label: p}``)."""
    out = []
    for p in predict_proba(model, vocab, texts, batch_size):
        k = int(p.argmax())
        out.append({"label": vocab.labels[k], "probability": float(p[k]),
                    "probabilities": {lab: float(q) for lab, q in zip(vocab.labels, p)}})
    return out


class ClassifierService:
    """A classifier checkpoint behind ``rnnkit serve``: ``predict(texts)`` gives each text's
    label and the probability of every class.  Safe to share between threads."""

    endpoints = ("predict",)

    def __init__(self, path):
        self.model, self.vocab, self.checkpoint = load_classifier(path)
        self._lock = threading.Lock()

    def info(self) -> dict:
        return {"vocab_size": len(self.vocab.words), "labels": list(self.vocab.labels)}

    def predict(self, texts: list[str]) -> list[dict]:
        tokens = [t.split() for t in texts]
        if not all(tokens):
            raise ValueError("a text to classify has no words")
        with self._lock:
            out = label_probabilities(self.model, self.vocab, tokens)
        for words, r in zip(tokens, out):
            r["tokens"] = words
        return out


def evaluate_file(path, file, *, encoding: str = "utf-8", fmt: str | None = None,
                  batch_size: int = 64) -> dict:
    """Accuracy, macro-F1, loss and the confusion matrix of a checkpoint on a labelled file
    (read in the format the model was trained on unless ``fmt`` says otherwise).  A label the
    model never saw is an error naming the file and line."""
    model, vocab, ck = load_classifier(path)
    data_info = ck.config.get("data", {})
    fmt = fmt or data_info.get("format", "auto")
    data = read_classification(Path(file), fmt, encoding=encoding,
                               label_column=data_info.get("label_column", "label"),
                               text_column=data_info.get("text_column", "text"),
                               labels=vocab.labels)
    r = evaluate_classifier(model, vocab.encode_texts(data.texts), vocab.encode_labels(data),
                            batch_size)
    return {"examples": len(data), "accuracy": r["accuracy"], "macro_f1": r["macro_f1"],
            "loss": r["loss"],
            "confusion matrix": "\n" + format_confusion(r["confusion"], vocab.labels)}


def evaluate_checkpoint(path, args) -> dict:
    """The ``rnnkit eval`` entry point for checkpoints of kind "classifier"."""
    return evaluate_file(path, args.file, encoding=getattr(args, "encoding", "utf-8"),
                         fmt=getattr(args, "format", None),
                         batch_size=max(int(getattr(args, "batch_size", 64) or 64), 64))


def predictor(path, args):
    """For ``rnnkit predict``: ``(answer, labels)``; ``answer(list of token lists)`` gives one
    output line per text (``label<TAB>p``, or every ``label=p`` with ``args.probs``), and
    ``labels`` are the class names (input lines that start with one may carry a label)."""
    model, vocab, _ = load_classifier(path)

    def answer(tokens_list):
        out = []
        for p in predict_proba(model, vocab, tokens_list, args.batch_size):
            if args.probs:
                out.append("\t".join(f"{lab}={q:.4f}" for lab, q in zip(vocab.labels, p)))
            else:
                k = int(p.argmax())
                out.append(f"{vocab.labels[k]}\t{p[k]:.4f}")
        return out

    return answer, vocab.labels


def inspect_forward(model, ids) -> None:
    """Run a classifier or tagger on token ids (B, T), every row full length."""
    B, T = np.shape(ids)
    model.forward(ids, lengths=np.full(B, T))
