"""Sequence-tagging training task, and :func:`train_tagger`, the one-call helper.

Batches are bucketed by length and shuffled with a generator derived from ``(seed, epoch)``
(as for classification, so resume is exact); the loss is the cross-entropy averaged over the
real tokens of a batch.

Python use::

    from rnnkit.tasks.tag.task import train_tagger
    model, vocab, summary = train_tagger(
        "ud/en_ewt-ud-train.conllu.gz", "ud/en_ewt-ud-dev.conllu", "ud/en_ewt-ud-test.conllu",
        model_config={"hidden_size": 128, "char_embed_size": 32, "char_hidden_size": 32,
                      "word_dropout": 0.1, "dropout": 0.3},
        train_config=TrainConfig(epochs=10, lr=2e-3), out="runs/upos")
    summary["test"]          # {"loss": ..., "accuracy": ...}
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import DataError
from ...metrics import span_prf
from ...nn.losses import softmax_cross_entropy
from ...text.batching import bucket_batches, epoch_rng, num_bucket_batches, pad_batch
from ...text.chars import CharTable
from ...text.tagged import TaggedData, is_bio, read_tagged
from ...text.vocab import Vocab, build_char_vocab, build_vocab, encode_sequences
from ...train.epoch_task import EpochOrderTask, fit_and_test, resume_setup, set_vectors
from ...train.trainer import TrainConfig
from .model import SequenceTagger, TaggerConfig


class TaggerVocab:
    """Words, characters (``None`` without a character encoder) and tags in id order; saved as
    the checkpoint's ``vocab.json``."""

    def __init__(self, words: Vocab, tags: list[str], chars: Vocab | None = None,
                 lowercase: bool = False, max_chars: int = 20):
        self.words, self.tags, self.chars = words, list(tags), chars
        self.lowercase, self.max_chars = lowercase, max_chars
        self.tag_ids = {t: i for i, t in enumerate(self.tags)}

    @classmethod
    def fit(cls, data: TaggedData, min_count: int = 1, max_size: int | None = None,
            lowercase: bool = False, chars: bool = True, max_chars: int = 20) -> TaggerVocab:
        sents = [[w.lower() for w in s] for s in data.sentences] if lowercase else data.sentences
        tags = sorted({t for s in data.tags for t in s})
        char_vocab = build_char_vocab(data.sentences) if chars else None
        return cls(build_vocab(sents, min_count, max_size), tags, char_vocab, lowercase,
                   max_chars)

    @property
    def bio(self) -> bool:
        return is_bio(self.tags)

    def char_table(self) -> CharTable | None:
        return None if self.chars is None else CharTable(self.chars, self.max_chars)

    def encode_words(self, sentences) -> list[np.ndarray]:
        return encode_sequences(self.words, sentences, self.lowercase)

    def encode_tags(self, data: TaggedData) -> list[np.ndarray]:
        out = []
        for tags, line in zip(data.tags, data.lines):
            ids = np.empty(len(tags), np.int64)
            for i, t in enumerate(tags):
                k = self.tag_ids.get(t)
                if k is None:
                    raise DataError(f"{data.source}: tag {t!r} in the sentence starting at line "
                                    f"{line} was never seen in training")
                ids[i] = k
            out.append(ids)
        return out

    def to_dict(self) -> dict:
        return {"words": self.words.to_dict(), "tags": self.tags,
                "chars": None if self.chars is None else self.chars.to_dict(),
                "lowercase": self.lowercase, "max_chars": self.max_chars}

    @classmethod
    def from_dict(cls, d: dict) -> TaggerVocab:
        try:
            chars = None if d["chars"] is None else Vocab.from_dict(d["chars"])
            return cls(Vocab.from_dict(d["words"]), list(d["tags"]), chars,
                       bool(d["lowercase"]), int(d["max_chars"]))
        except (KeyError, TypeError) as e:
            raise DataError(f"tagger vocabulary unreadable ({e})") from None


class EncodedSentences:
    """A split ready for batching: word ids, form ids (for characters) and tag ids."""

    def __init__(self, vocab: TaggerVocab, table: CharTable | None, sentences, tags=None):
        self.words = vocab.encode_words(sentences)
        self.forms = None if table is None else [table.add(s) for s in sentences]
        self.tags = tags
        self.table = table
        self.lengths = np.array([len(s) for s in sentences])

    def batch(self, idx):
        """``(ids, lengths, chars, tags)`` of the examples ``idx``; tags None if absent."""
        x, lengths = pad_batch([self.words[j] for j in idx])
        chars = None
        if self.table is not None:
            forms, _ = pad_batch([self.forms[j] for j in idx])
            chars = self.table.batch(forms, lengths)
        tags = None
        if self.tags is not None:
            tags, _ = pad_batch([self.tags[j] for j in idx])
        return x, lengths, chars, tags

    def part(self, lo: int, hi: int) -> EncodedSentences:
        """The sentences ``lo .. hi - 1`` alone."""
        sub = object.__new__(EncodedSentences)
        sub.words, sub.table, sub.lengths = self.words[lo:hi], self.table, self.lengths[lo:hi]
        sub.forms = None if self.forms is None else self.forms[lo:hi]
        sub.tags = None if self.tags is None else self.tags[lo:hi]
        return sub


def predict_tags(model: SequenceTagger, enc: EncodedSentences, batch_size: int = 64):
    """Predicted tag ids per sentence, plus the summed loss and token count if tags exist."""
    was = model.training
    model.eval()
    preds: list = [None] * len(enc.lengths)
    total, count = 0.0, 0
    try:
        for idx in bucket_batches(enc.lengths, batch_size):
            x, lengths, chars, tags = enc.batch(idx)
            logits, _ = model.forward(x, lengths, chars)
            if tags is not None:
                mask = np.arange(x.shape[1])[None, :] < lengths[:, None]
                loss, _, n = softmax_cross_entropy(logits, tags, mask)
                total += loss * n
                count += n
            best = logits.argmax(axis=-1)
            for b, j in enumerate(idx):
                preds[j] = best[b, : lengths[b]]
    finally:
        model.train(was)
    return preds, total, count


def evaluate_tagger(model: SequenceTagger, vocab: TaggerVocab, enc: EncodedSentences,
                    batch_size: int = 64, world=None) -> dict:
    """Loss and token accuracy; accuracy on words outside the word vocabulary; span P/R/F1
    when the tags are BIO/IOB/BIOES.  With a :class:`~rnnkit.distributed.World`, each rank
    tags its share of the sentences and the figures are those of all of them."""
    if world is None or world.size == 1:
        preds, total, count = predict_tags(model, enc, batch_size)
    else:
        lo, hi = world.part(len(enc.lengths))
        mine = predict_tags(model, enc.part(lo, hi), batch_size) if hi > lo else ([], 0.0, 0)
        parts = world.allgather(mine, what="the validation predictions")
        preds = [p for part in parts for p in part[0]]
        total, count = sum(p[1] for p in parts), sum(p[2] for p in parts)
    gold = np.concatenate(enc.tags)
    pred = np.concatenate(preds)
    unk = np.concatenate(enc.words) == vocab.words.unk_id
    out = {"loss": total / max(count, 1), "accuracy": float((gold == pred).mean())}
    if unk.any():
        out["oov_accuracy"] = float((gold[unk] == pred[unk]).mean())
    out["tokens"] = int(gold.size)
    out["oov_tokens"] = int(unk.sum())
    if vocab.bio:
        names = vocab.tags
        r = span_prf([[names[k] for k in s] for s in enc.tags],
                     [[names[k] for k in s] for s in preds])
        out.update({"span_precision": r["precision"], "span_recall": r["recall"],
                    "span_f1": r["f1"]})
    return out


class TagTask(EpochOrderTask):
    """Glue between :class:`SequenceTagger` and the trainer (see the trainer's protocol)."""

    kind = "tagger"
    metric = ("accuracy", "max")

    def __init__(self, model: SequenceTagger, vocab: TaggerVocab, train: TaggedData,
                 valid: TaggedData | None = None, test: TaggedData | None = None, *,
                 batch_size: int = 32, seed: int = 0, data_info: dict | None = None):
        self.model, self.vocab = model, vocab
        self.B, self.seed = batch_size, seed
        self.data_info = data_info or {}
        self.table = vocab.char_table()
        self.splits = {}
        for name, data in (("train", train), ("valid", valid), ("test", test)):
            if data is not None:
                self.splits[name] = EncodedSentences(vocab, self.table, data.sentences,
                                            vocab.encode_tags(data))
        self.epoch, self.batches = 0, []

    def num_batches(self) -> int:
        return num_bucket_batches(len(self.splits["train"].lengths), self.B)

    def start_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.batches = bucket_batches(self.splits["train"].lengths, self.B,
                                      epoch_rng(self.seed, epoch))

    def train_batch(self, i: int, rng: np.random.Generator):
        idx = self.my_part(self.batches[i])
        if len(idx) == 0:  # a short last batch leaves some processes without sentences
            return 0.0, 0
        x, lengths, chars, tags = self.splits["train"].batch(idx)
        return self.model.loss(x, lengths, tags, chars, rng=rng)

    def evaluate(self, split: str):
        if split not in self.splits:
            return None
        r = evaluate_tagger(self.model, self.vocab, self.splits[split], max(self.B, 64),
                            world=self.world)
        return {k: v for k, v in r.items() if k not in ("tokens", "oov_tokens")}

    def eval_size(self) -> int:
        return int(self.splits["valid"].lengths.sum()) if "valid" in self.splits else 0


def train_tagger(train, valid=None, test=None, *, model_config: dict | None = None,
                 train_config: TrainConfig | None = None, out="runs/tagger", fmt: str = "auto",
                 column: str = "upos", encoding: str = "utf-8", lowercase: bool = False,
                 min_count: int = 1, max_vocab: int | None = None, chars: bool = True,
                 max_chars: int = 20, vectors=None, batch_size: int = 32,
                 resume: bool = False, on_error: str = "raise", reserve_s: float = 0.0,
                 echo=print, memory_check: bool = True):
    """Read the files, build the vocabularies and model, train, and test the best checkpoint.

    ``train``/``valid``/``test``: file paths or :class:`TaggedData`.  ``model_config``:
    :class:`TaggerConfig` fields other than the vocabulary sizes and ``num_tags``; ``chars``
    adds the character encoder.  Returns ``(model, vocab, summary)`` with
    ``summary["test"]`` when there is test data.
    """
    tcfg = train_config or TrainConfig()
    out = Path(out)
    info = {"format": fmt, "column": column, "encoding": encoding,
            "train": train.source if isinstance(train, TaggedData) else str(train)}

    def read(data):
        if data is None or isinstance(data, TaggedData):
            return data
        return read_tagged(data, fmt, column=column, encoding=encoding, on_error=on_error)

    train, valid, test = read(train), read(valid), read(test)
    if resume:
        vocab, cfg, batch_size, info = resume_setup(out, "tagger", TaggerVocab, TaggerConfig,
                                                    batch_size, info)
    else:
        seen = sorted({t for sentence in train.tags for t in sentence})
        if len(seen) < 2:
            raise DataError(f"{train.source}: needs at least 2 tags, found {seen!r}")
        vocab = TaggerVocab.fit(train, min_count, max_vocab, lowercase, chars, max_chars)
        extra = dict(model_config or {})
        if chars:
            extra["char_vocab_size"] = len(vocab.chars)
        cfg = TaggerConfig(vocab_size=len(vocab.words), num_tags=len(vocab.tags), **extra)
    if memory_check:
        from ...train.memory import check_memory, config_training_bytes

        check_memory(f"{out}/last" if resume else "the model options", config_training_bytes(
            cfg, tcfg.optimizer, tcfg.momentum, bool(tcfg.ema), batch_size))
    model = SequenceTagger(cfg, rng=np.random.default_rng(tcfg.seed))
    if vectors is not None and not resume:
        set_vectors(model, vocab.words, vectors, info, echo)
    task = TagTask(model, vocab, train, valid, test, batch_size=batch_size, seed=tcfg.seed,
                   data_info=info)
    summary = fit_and_test(task, tcfg, out, resume=resume, echo=echo, reserve_s=reserve_s)
    return model, vocab, summary
