"""Sequence-classification training task, and :func:`train_classifier`, the one-call helper.

Each epoch the training examples are shuffled and cut into batches of similar lengths
(:func:`~rnnkit.text.batching.bucket_batches`) with a generator derived from ``(seed, epoch)``,
so the order of any epoch can be rebuilt from those two numbers alone: a run resumed in the
middle of an epoch continues with exactly the batches it would have seen.

Python use::

    from rnnkit.tasks.classify.task import train_classifier
    model, vocab, summary = train_classifier(
        "sst/stsa.binary.train", "sst/stsa.binary.dev", "sst/stsa.binary.test",
        model_config={"cell": "lstm", "hidden_size": 64, "pooling": "max",
                      "embed_dropout": 0.5, "dropout": 0.5},
        train_config=TrainConfig(epochs=10, lr=1e-3, patience=3), out="runs/sst2")
    summary["test"]          # {"loss": ..., "accuracy": ..., "macro_f1": ...}

or build a :class:`ClassifyTask` around a :class:`~rnnkit.tasks.classify.model.SequenceClassifier`
and hand it to :class:`~rnnkit.train.trainer.Trainer` (the helper's body and
:func:`~rnnkit.train.epoch_task.fit_and_test` show how).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import DataError
from ...metrics import accuracy, confusion_matrix, macro_f1
from ...nn.losses import softmax_cross_entropy
from ...text.batching import bucket_batches, epoch_rng, num_bucket_batches, pad_batch
from ...text.classification import ClassificationData, check_label_counts, read_classification
from ...text.vocab import Vocab, build_vocab, encode_sequences
from ...train.epoch_task import EpochOrderTask, fit_and_test, resume_setup, set_vectors
from ...train.trainer import TrainConfig
from .model import ClassifierConfig, SequenceClassifier


class ClassifierVocab:
    """Words (``<pad>`` 0, ``<unk>`` 1, ...), the label names in id order, and whether words
    are lowercased before lookup.  Saved as the checkpoint's ``vocab.json``."""

    def __init__(self, words: Vocab, labels: list[str], lowercase: bool = False):
        self.words, self.labels, self.lowercase = words, list(labels), lowercase
        self.label_ids = {lab: i for i, lab in enumerate(self.labels)}

    @classmethod
    def fit(cls, data: ClassificationData, min_count: int = 1, max_size: int | None = None,
            lowercase: bool = False) -> ClassifierVocab:
        texts = [[t.lower() for t in s] for s in data.texts] if lowercase else data.texts
        return cls(build_vocab(texts, min_count, max_size), sorted(set(data.labels)), lowercase)

    def encode_texts(self, texts) -> list[np.ndarray]:
        return encode_sequences(self.words, texts, self.lowercase)

    def encode_labels(self, data: ClassificationData) -> np.ndarray:
        out = np.empty(len(data.labels), np.int64)
        for i, (lab, line) in enumerate(zip(data.labels, data.lines)):
            k = self.label_ids.get(lab)
            if k is None:
                raise DataError(f"{data.source}:{line}: label {lab!r} was never seen in "
                                f"training (known: {', '.join(map(repr, self.labels[:10]))})")
            out[i] = k
        return out

    def to_dict(self) -> dict:
        return {"words": self.words.to_dict(), "labels": self.labels,
                "lowercase": self.lowercase}

    @classmethod
    def from_dict(cls, d: dict) -> ClassifierVocab:
        try:
            return cls(Vocab.from_dict(d["words"]), list(d["labels"]), bool(d["lowercase"]))
        except (KeyError, TypeError) as e:
            raise DataError(f"classifier vocabulary unreadable ({e})") from None


def evaluate_classifier(model: SequenceClassifier, ids: list[np.ndarray], labels: np.ndarray,
                        batch_size: int = 64) -> dict:
    """Loss, accuracy, macro-F1, the confusion matrix and the predictions, in eval mode."""
    was = model.training
    model.eval()
    preds = np.empty(len(ids), np.int64)
    total = 0.0
    try:
        for idx in bucket_batches([len(s) for s in ids], batch_size):
            x, lengths = pad_batch([ids[j] for j in idx])
            logits, _ = model.forward(x, lengths)
            loss, _, n = softmax_cross_entropy(logits, labels[idx])
            total += loss * n
            preds[idx] = logits.argmax(axis=1)
    finally:
        model.train(was)
    C = model.cfg.num_classes
    return {"loss": total / len(ids), "accuracy": accuracy(labels, preds),
            "macro_f1": macro_f1(labels, preds, C),
            "confusion": confusion_matrix(labels, preds, C), "predictions": preds}


class ClassifyTask(EpochOrderTask):
    """Glue between :class:`SequenceClassifier` and the trainer (see the trainer's protocol)."""

    kind = "classifier"
    metric = ("accuracy", "max")

    def __init__(self, model: SequenceClassifier, vocab: ClassifierVocab,
                 train: ClassificationData, valid: ClassificationData | None = None,
                 test: ClassificationData | None = None, *, batch_size: int = 32,
                 seed: int = 0, data_info: dict | None = None):
        self.model, self.vocab = model, vocab
        self.B, self.seed = batch_size, seed
        self.data_info = data_info or {}
        self.splits = {}
        for name, data in (("train", train), ("valid", valid), ("test", test)):
            if data is not None:
                self.splits[name] = (vocab.encode_texts(data.texts), vocab.encode_labels(data))
        self.lengths = np.array([len(s) for s in self.splits["train"][0]])
        self.epoch, self.batches = 0, []

    def num_batches(self) -> int:
        return num_bucket_batches(len(self.lengths), self.B)

    def start_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.batches = bucket_batches(self.lengths, self.B, epoch_rng(self.seed, epoch))

    def train_batch(self, i: int, rng: np.random.Generator):
        ids, labels = self.splits["train"]
        idx = self.my_part(self.batches[i])
        if len(idx) == 0:  # a short last batch leaves some processes without examples
            return 0.0, 0
        x, lengths = pad_batch([ids[j] for j in idx])
        return self.model.loss(x, lengths, labels[idx], rng=rng)

    def evaluate(self, split: str):
        if split not in self.splits:
            return None
        ids, labels = self.splits[split]
        size = max(self.B, 64)
        if self.world is None or self.world.size == 1:
            r = evaluate_classifier(self.model, ids, labels, batch_size=size)
            return {"loss": r["loss"], "accuracy": r["accuracy"], "macro_f1": r["macro_f1"]}
        lo, hi = self.world.part(len(ids))  # this rank's examples, then everyone's predictions
        mine = (0.0, np.empty(0, np.int64))
        if hi > lo:
            r = evaluate_classifier(self.model, ids[lo:hi], labels[lo:hi], batch_size=size)
            mine = (r["loss"] * (hi - lo), r["predictions"])
        parts = self.world.allgather(mine, what="the validation predictions")
        preds = np.concatenate([p for _, p in parts])
        C = self.model.cfg.num_classes
        return {"loss": sum(t for t, _ in parts) / len(ids), "accuracy": accuracy(labels, preds),
                "macro_f1": macro_f1(labels, preds, C)}

    def eval_size(self) -> int:
        return len(self.splits["valid"][1]) if "valid" in self.splits else 0


def _read(data, fmt, encoding, columns, lowercase, on_error):
    if data is None or isinstance(data, ClassificationData):
        return data
    return read_classification(data, fmt, encoding=encoding, label_column=columns[0],
                               text_column=columns[1], lowercase=lowercase, on_error=on_error)


def train_classifier(train, valid=None, test=None, *, model_config: dict | None = None,
                     train_config: TrainConfig | None = None, out="runs/classifier",
                     fmt: str = "auto", encoding: str = "utf-8", label_column: str = "label",
                     text_column: str = "text", lowercase: bool = False, min_count: int = 1,
                     max_vocab: int | None = None, min_label_count: int = 2, vectors=None,
                     batch_size: int = 32, resume: bool = False, on_error: str = "raise",
                     reserve_s: float = 0.0, echo=print, memory_check: bool = True):
    """Read the files, build the vocabulary and model, train, and test the best checkpoint.

    ``train``/``valid``/``test``: file paths or :class:`ClassificationData`.  ``model_config``:
    :class:`ClassifierConfig` fields other than ``vocab_size`` and ``num_classes``.
    ``vectors``: a GloVe/word2vec text file to initialise the embeddings.  With ``resume`` the
    vocabulary, model configuration and batch size come from ``out/last``.

    Returns ``(model, vocab, summary)``: the best model (by validation accuracy, or the last
    one without validation data), its vocabulary, and the trainer's summary plus
    ``summary["test"]``.
    """
    tcfg = train_config or TrainConfig()
    out = Path(out)
    info = {"format": fmt, "encoding": encoding, "label_column": label_column,
            "text_column": text_column, "train": str(train) if not isinstance(
                train, ClassificationData) else train.source}
    read = (fmt, encoding, (label_column, text_column), False, on_error)
    train = _read(train, *read)
    valid, test = _read(valid, *read), _read(test, *read)
    if resume:
        vocab, cfg, batch_size, info = resume_setup(out, "classifier", ClassifierVocab,
                                                    ClassifierConfig, batch_size, info)
    else:
        if min_label_count > 1:
            check_label_counts(train, min_label_count)
        vocab = ClassifierVocab.fit(train, min_count, max_vocab, lowercase)
        if len(vocab.labels) < 2:
            raise DataError(f"{train.source}: needs at least 2 labels, found "
                            f"{vocab.labels!r}")
        cfg = ClassifierConfig(vocab_size=len(vocab.words), num_classes=len(vocab.labels),
                               **(model_config or {}))
    if memory_check:
        from ...train.memory import check_memory, config_training_bytes

        check_memory(f"{out}/last" if resume else "the model options", config_training_bytes(
            cfg, tcfg.optimizer, tcfg.momentum, bool(tcfg.ema), batch_size))
    model = SequenceClassifier(cfg, rng=np.random.default_rng(tcfg.seed))
    if vectors is not None and not resume:
        set_vectors(model, vocab.words, vectors, info, echo)
    task = ClassifyTask(model, vocab, train, valid, test, batch_size=batch_size,
                        seed=tcfg.seed, data_info=info)
    summary = fit_and_test(task, tcfg, out, resume=resume, echo=echo, reserve_s=reserve_s)
    return model, vocab, summary
