"""What the sequence classifier and the sequence tagger share: the word-level trunk.

::

    x_t = dropout_e(E'[w_t] [⊕ f_t])        (B, T, E [+ F]); f_t: more features of word t
                                             E': E with whole words dropped (dropout_embed)
    h_1..h_T = RNN(x_1..x_T)                 (B, T, dirs*H)
    logits = dropout_o(g(h)) W_o + b_o       g: pooling -> (B, C), or none -> (B, T, K)

:class:`WordRNN` builds the parameters of that trunk (``embed``, ``rnn``, ``out``) and the two
dropouts; the subclasses write ``forward``/``backward`` (what sits between ``rnn`` and ``out``:
pooling for the classifier, nothing for the tagger).  Also here: the configuration checks both
configs run, word dropout, copying pre-trained vectors, and the checks of a padded batch.
``locked`` makes every dropout mask over time one mask per sequence; ``weight_drop`` is
DropConnect on every ``W_h`` (:mod:`rnnkit.nn.recurrent`).
Vocabulary convention (:mod:`rnnkit.text.vocab`): ``<pad>`` is id 0, ``<unk>`` id 1.

>>> from rnnkit.tasks.classify.model import ClassifierConfig, SequenceClassifier
>>> cfg = ClassifierConfig(vocab_size=5, num_classes=2, embed_size=2, hidden_size=2,
...                        bidirectional=False)
>>> list(SequenceClassifier(cfg, rng=0).parameters())      # the checkpoint's weight names
['embed.W', 'rnn.layers.0.fwd.W_x', 'rnn.layers.0.fwd.W_h', 'rnn.layers.0.fwd.b', 'out.W', 'out.b']
"""

from __future__ import annotations

import numpy as np

from ..checks import check_ids, check_lengths
from ..errors import ConfigError
from . import init as initializers
from .layers import Dropout, Embedding, Linear
from .losses import softmax
from .module import Module
from .recurrent import make_recurrent

PAD_ID, UNK_ID = 0, 1  # the vocabulary convention of rnnkit.text.vocab


def check_common(cfg, name: str) -> None:
    """Check the fields every word-level config has (cell, sizes, dropouts, init, dtype)."""
    if cfg.cell not in ("rnn", "gru", "lstm"):
        raise ConfigError(f"{name}: cell must be rnn, gru or lstm, got {cfg.cell!r}")
    for k in ("vocab_size", "embed_size", "hidden_size", "num_layers"):
        v = getattr(cfg, k)
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ConfigError(f"{name}: {k} must be a positive integer, got {v!r}")
    for k in ("dropout", "embed_dropout", "word_dropout", "dropout_embed", "weight_drop"):
        v = getattr(cfg, k)
        if not isinstance(v, (int, float)) or not 0 <= v < 1:
            raise ConfigError(f"{name}: {k} must be in [0, 1), got {v!r}")
    if cfg.embed_init not in ("uniform", "normal"):
        raise ConfigError(f"{name}: embed_init must be uniform or normal, got {cfg.embed_init!r}")
    if cfg.dtype not in ("float32", "float64"):
        raise ConfigError(f"{name}: dtype must be float32 or float64, got {cfg.dtype!r}")


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


class WordRNN(Module):
    """The trunk's parameters: ``embed`` -> [``add_features``] -> ``rnn`` -> ``out``.

    Built in that order from one generator, so the order fixes both the random draws and the
    checkpoint's weight names (``embed.W``, ``rnn.…``, ``out.W``, ``out.b``); ``drop_e`` acts
    on the recurrent stack's input, ``drop_o`` before ``out``.  ``cfg`` needs the fields
    :func:`check_common` checks plus ``bidirectional``.
    """

    def __init__(self, cfg, num_outputs: int, rng=None):
        super().__init__()
        self.cfg = cfg
        rng = initializers.as_rng(rng)
        dt = cfg.dtype
        self.embed = self.add_module("embed", Embedding(
            cfg.vocab_size, cfg.embed_size, init=cfg.embed_init, init_scale=0.1,
            padding_idx=PAD_ID, dtype=dt, rng=rng))
        features = self.add_features(rng)
        self.rnn = self.add_module("rnn", make_recurrent(
            cfg.cell, cfg.embed_size + features, cfg.hidden_size, cfg.num_layers,
            bidirectional=cfg.bidirectional, dropout=cfg.dropout, weight_drop=cfg.weight_drop,
            locked=cfg.locked, dtype=dt, rng=rng))
        self.out = self.add_module("out", Linear(self.rnn.output_size, num_outputs, dtype=dt,
                                                 rng=rng))
        self.drop_e = self.add_module("drop_e", Dropout(cfg.embed_dropout))
        self.drop_o = self.add_module("drop_o", Dropout(cfg.dropout))

    def add_features(self, rng: np.random.Generator) -> int:
        """Add the modules whose per-word features join the word embedding (drawing their
        weights from ``rng``); returns how many features they add.  None here."""
        return 0

    def set_embeddings(self, vectors: np.ndarray, rows: np.ndarray) -> None:
        """Copy pre-trained ``vectors`` (N, E) into the word-embedding rows ``rows`` (N,)."""
        copy_vectors(self.embed, vectors, rows)

    def _predict_proba(self, *inputs) -> np.ndarray:
        """softmax of ``forward(*inputs)``'s logits in float64, in evaluation mode (no
        dropout); the training mode is restored afterwards."""
        was = self.training
        self.eval()
        try:
            logits, _ = self.forward(*inputs)
        finally:
            self.train(was)
        return softmax(logits.astype(np.float64))
