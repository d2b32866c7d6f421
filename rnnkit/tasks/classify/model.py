"""Sequence classifier (many-to-one): embedding -> (bi)RNN/GRU/LSTM stack -> pooling -> linear.

::

    e_t = dropout_e(E[w_t])                      word dropout first: w_t -> <unk> with prob. p_w
    h_1..h_T = RNN(e_1..e_T)                     (B, T, dirs*H), zero at padded steps
    v = pool(h, lengths)                         last | mean | max over real steps (pooling.py)
    p(y | w) = softmax(dropout(v) W_o + b_o)     (B, C)

Batches are padded with ``<pad>`` (id 0) and carry ``lengths``; padded steps never reach the
pooled vector, so a row's prediction does not depend on what it is batched with.  The
embedding, recurrent stack and output layer are built by :class:`~rnnkit.nn.word_rnn.WordRNN`
(shared with the tagger).

>>> cfg = ClassifierConfig(vocab_size=20, num_classes=3, embed_size=8, hidden_size=8)
>>> model = SequenceClassifier(cfg, rng=0)
>>> ids = np.array([[4, 5, 6], [7, 8, 0]])
>>> logits, cache = model.forward(ids, lengths=[3, 2])
>>> logits.shape
(2, 3)
>>> loss, n = model.loss(ids, [3, 2], [0, 2])    # mean NLL, gradients accumulated
>>> n
2

Training with the generic trainer (see :func:`rnnkit.tasks.classify.task.train_classifier`
for the one-call helper that also builds the vocabulary and reads the files).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ...checks import config_from_dict
from ...errors import ConfigError
from ...nn.losses import softmax_cross_entropy
from ...nn.pooling import POOLINGS, pool_backward, pool_forward
from ...nn.word_rnn import WordRNN, check_batch, check_common, word_dropout


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
    dropout_embed: float = 0.0  # whole words: rows of the embedding matrix, per batch
    weight_drop: float = 0.0  # DropConnect on every W_h, one mask per batch
    locked: bool = False  # every dropout mask over time drawn once per sequence

    def __post_init__(self):
        check_common(self, "ClassifierConfig")
        if not isinstance(self.num_classes, int) or self.num_classes < 2:
            raise ConfigError(f"ClassifierConfig: num_classes must be an integer >= 2, got "
                              f"{self.num_classes!r}")
        if self.pooling not in POOLINGS:
            raise ConfigError(f"ClassifierConfig: pooling must be one of {', '.join(POOLINGS)}, "
                              f"got {self.pooling!r}")

    @classmethod
    def from_dict(cls, d: dict) -> ClassifierConfig:
        return config_from_dict(cls, d, "classifier")

    def to_dict(self) -> dict:
        return asdict(self)


class SequenceClassifier(WordRNN):
    """Many-to-one network: one label per sequence.  See the module docstring."""

    kind = "classifier"

    def __init__(self, cfg: ClassifierConfig, rng=None):
        super().__init__(cfg, cfg.num_classes, rng)

    # -- forward / backward -----------------------------------------------------------
    def forward(self, ids, lengths=None, *, rng: np.random.Generator | None = None):
        """``ids`` (B, T) padded with 0, ``lengths`` (B,) -> ``(logits (B, C), cache)``."""
        cfg = self.cfg
        ids, lengths = check_batch("SequenceClassifier", ids, lengths, cfg.vocab_size)
        rng = rng if rng is not None else np.random.default_rng()
        if self.training:
            ids = word_dropout(ids, lengths, cfg.word_dropout, rng)
        emb, emb_cache = self.embed.forward(ids, cfg.dropout_embed, rng)  # (B, T, E)
        x, m_e = self.drop_e.forward(emb, rng, cfg.locked)
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
        return self._predict_proba(ids, lengths)
