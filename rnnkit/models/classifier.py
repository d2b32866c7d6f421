"""Sequence classifier (many-to-one): embedding -> (bi)RNN/GRU/LSTM stack -> pooling -> linear.

::

    e_t = dropout_e(E[w_t])                      word dropout first: w_t -> <unk> with prob. p_w
    h_1..h_T = RNN(e_1..e_T)                     (B, T, dirs*H), zero at padded steps
    v = pool(h, lengths)                         last | mean | max over real steps (pooling.py)
    p(y | w) = softmax(dropout(v) W_o + b_o)     (B, C)

Batches are padded with ``<pad>`` (id 0) and carry ``lengths``; padded steps never reach the
pooled vector, so a row's prediction does not depend on what it is batched with.

>>> cfg = ClassifierConfig(vocab_size=20, num_classes=3, embed_size=8, hidden_size=8)
>>> model = SequenceClassifier(cfg, rng=0)
>>> ids = np.array([[4, 5, 6], [7, 8, 0]])
>>> logits, cache = model.forward(ids, lengths=[3, 2])
>>> logits.shape
(2, 3)
>>> loss, n = model.loss(ids, [3, 2], [0, 2])    # mean NLL, gradients accumulated
>>> n
2

Training with the generic trainer (see :func:`rnnkit.train.classify_task.train_classifier`
for the one-call helper that also builds the vocabulary and reads the files).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

from .. import init as initializers
from ..checks import check_ids, check_lengths
from ..errors import ConfigError
from ..layers import Dropout, Embedding, Linear
from ..losses import softmax, softmax_cross_entropy
from ..module import Module
from ..recurrent import make_recurrent
from .pooling import POOLINGS, pool_backward, pool_forward

PAD_ID, UNK_ID = 0, 1  # the vocabulary convention of rnnkit.text.vocab


def _check_common(cfg, name: str) -> None:
    if cfg.cell not in ("rnn", "gru", "lstm"):
        raise ConfigError(f"{name}: cell must be rnn, gru or lstm, got {cfg.cell!r}")
    for k in ("vocab_size", "embed_size", "hidden_size", "num_layers"):
        v = getattr(cfg, k)
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ConfigError(f"{name}: {k} must be a positive integer, got {v!r}")
    for k in ("dropout", "embed_dropout", "word_dropout"):
        v = getattr(cfg, k)
        if not isinstance(v, (int, float)) or not 0 <= v < 1:
            raise ConfigError(f"{name}: {k} must be in [0, 1), got {v!r}")
    if cfg.embed_init not in ("uniform", "normal"):
        raise ConfigError(f"{name}: embed_init must be uniform or normal, got {cfg.embed_init!r}")
    if cfg.dtype not in ("float32", "float64"):
        raise ConfigError(f"{name}: dtype must be float32 or float64, got {cfg.dtype!r}")


def _from_dict(cls, d: dict, what: str):
    if not isinstance(d, dict):
        raise ConfigError(f"{what} config must be a dict, got {type(d).__name__}")
    names = {f.name for f in fields(cls)}
    unknown = set(d) - names
    if unknown:
        raise ConfigError(f"unknown {what} config keys: {sorted(unknown)}")
    return cls(**d)


@dataclass
class ClassifierConfig:
    """Everything needed to rebuild a :class:`SequenceClassifier` (saved as JSON)."""

    vocab_size: int
    num_classes: int
    cell: str = "lstm"
    embed_size: int = 128
    hidden_size: int = 128
    num_layers: int = 1
    bidirectional: bool = True
    pooling: str = "max"  # "last" | "mean" | "max"
    dropout: float = 0.0  # between recurrent layers and on the pooled vector
    embed_dropout: float = 0.0  # on the embedded words
    word_dropout: float = 0.0  # training tokens replaced by <unk> with this probability
    freeze_embeddings: bool = False  # e.g. with pre-trained vectors (weight decay still applies)
    embed_init: str = "uniform"  # "uniform": U(-0.1, 0.1); "normal": N(0, 1) as in PyTorch
    dtype: str = "float32"

    def __post_init__(self):
        _check_common(self, "ClassifierConfig")
        if not isinstance(self.num_classes, int) or self.num_classes < 2:
            raise ConfigError(f"ClassifierConfig: num_classes must be an integer >= 2, got "
                              f"{self.num_classes!r}")
        if self.pooling not in POOLINGS:
            raise ConfigError(f"ClassifierConfig: pooling must be one of {', '.join(POOLINGS)}, "
                              f"got {self.pooling!r}")

    @classmethod
    def from_dict(cls, d: dict) -> ClassifierConfig:
        return _from_dict(cls, d, "classifier")

    def to_dict(self) -> dict:
        return asdict(self)


def word_dropout(ids: np.ndarray, lengths: np.ndarray, p: float, rng) -> np.ndarray:
    """``ids`` with each real (non-pad) token replaced by ``<unk>`` with probability ``p``."""
    if p == 0.0:
        return ids
    drop = (rng.random(ids.shape) < p) & (ids != PAD_ID)  # (B, T)
    return np.where(drop, UNK_ID, ids)


def copy_vectors(embed: Embedding, vectors: np.ndarray, rows: np.ndarray) -> None:
    """Copy pre-trained ``vectors`` (N, E) into rows ``rows`` (N,) of ``embed``."""
    W = embed.param["W"]
    vectors = np.asarray(vectors)
    if vectors.ndim != 2 or vectors.shape[1] != W.shape[1]:
        raise ConfigError(f"pre-trained vectors have {vectors.shape[-1]} dimensions but the "
                          f"embedding size is {W.shape[1]}; pass a matching --embed")
    W[np.asarray(rows)] = vectors


def check_batch(owner: str, ids, lengths, vocab_size: int):
    """Check padded ``ids`` (B, T) and ``lengths`` (B,) once, at the public boundary."""
    ids = np.asarray(ids)
    if ids.ndim != 2:
        raise ValueError(f"{owner}: expected ids of shape (B, T), got {ids.shape}")
    ids = check_ids(owner, "ids", ids, vocab_size)
    B, T = ids.shape
    if B == 0 or T == 0:
        raise ValueError(f"{owner}: expected at least one row and one step, got ids of shape "
                         f"{ids.shape}")
    lengths = np.full(B, T, np.int64) if lengths is None else check_lengths(owner, lengths, B, T)
    return ids, lengths


class SequenceClassifier(Module):
    """Many-to-one network: one label per sequence.  See the module docstring."""

    kind = "classifier"

    def __init__(self, cfg: ClassifierConfig, rng=None):
        super().__init__()
        self.cfg = cfg
        rng = initializers.as_rng(rng)
        dt = cfg.dtype
        self.embed = self.add_module("embed", Embedding(
            cfg.vocab_size, cfg.embed_size, init=cfg.embed_init, init_scale=0.1,
            padding_idx=PAD_ID, dtype=dt, rng=rng))
        self.rnn = self.add_module("rnn", make_recurrent(
            cfg.cell, cfg.embed_size, cfg.hidden_size, cfg.num_layers,
            bidirectional=cfg.bidirectional, dropout=cfg.dropout, dtype=dt, rng=rng))
        self.out = self.add_module("out", Linear(self.rnn.output_size, cfg.num_classes,
                                                 dtype=dt, rng=rng))
        self.drop_e = self.add_module("drop_e", Dropout(cfg.embed_dropout))
        self.drop_o = self.add_module("drop_o", Dropout(cfg.dropout))

    def set_embeddings(self, vectors: np.ndarray, rows: np.ndarray) -> None:
        """Copy pre-trained ``vectors`` (N, E) into the embedding rows ``rows`` (N,)."""
        copy_vectors(self.embed, vectors, rows)

    # -- forward / backward -----------------------------------------------------------
    def forward(self, ids, lengths=None, *, rng: np.random.Generator | None = None):
        """``ids`` (B, T) padded with 0, ``lengths`` (B,) -> ``(logits (B, C), cache)``."""
        cfg = self.cfg
        ids, lengths = check_batch("SequenceClassifier", ids, lengths, cfg.vocab_size)
        rng = rng if rng is not None else np.random.default_rng()
        if self.training:
            ids = word_dropout(ids, lengths, cfg.word_dropout, rng)
        emb, emb_cache = self.embed.forward(ids)  # (B, T, E)
        x, m_e = self.drop_e.forward(emb, rng)
        h, _, rnn_cache = self.rnn.forward(x, lengths=lengths, rng=rng)  # (B, T, dirs*H)
        v, pool_cache = pool_forward(h, lengths, cfg.pooling, cfg.bidirectional)  # (B, F)
        v, m_o = self.drop_o.forward(v, rng)
        logits, out_cache = self.out.forward(v)  # (B, C)
        return logits, (emb_cache, m_e, rnn_cache, pool_cache, m_o, out_cache)

    def backward(self, dlogits, cache) -> None:
        """Accumulate parameter gradients from ``dlogits`` (B, C)."""
        emb_cache, m_e, rnn_cache, pool_cache, m_o, out_cache = cache
        dv = self.drop_o.backward(self.out.backward(dlogits, out_cache), m_o)
        dh = pool_backward(dv, pool_cache)
        dx, _ = self.rnn.backward(dh, rnn_cache)
        if not self.cfg.freeze_embeddings:
            self.embed.backward(self.drop_e.backward(dx, m_e), emb_cache)

    def loss(self, ids, lengths, labels, *, rng=None, backward: bool = True):
        """Mean cross-entropy over the rows; returns ``(mean_loss, n_rows)``."""
        logits, cache = self.forward(ids, lengths, rng=rng)
        loss, dlogits, n = softmax_cross_entropy(logits, np.asarray(labels))
        if backward:
            self.backward(dlogits, cache)
        return loss, n

    def predict_proba(self, ids, lengths=None) -> np.ndarray:
        """Class probabilities (B, C), in evaluation mode (no dropout)."""
        was = self.training
        self.eval()
        try:
            logits, _ = self.forward(ids, lengths)
        finally:
            self.train(was)
        return softmax(logits.astype(np.float64))
