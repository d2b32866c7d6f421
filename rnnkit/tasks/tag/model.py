"""Sequence tagger (many-to-many): one tag per word.

::

    c_w = BiRNN_char(chars of w)  (last pooling: fwd final ⊕ bwd final)   optional, (2Hc,)
    e_t = dropout_e(E[w_t] ⊕ c_{w_t})                                      (B, T, E [+ 2Hc])
    h_1..h_T = BiRNN(e_1..e_T)                                             (B, T, 2H)
    p(y_t | w) = softmax(dropout(h_t) W_o + b_o)                          at every real step

The loss is the cross-entropy averaged over real (non-padded) steps.  The character encoder
lets the tagger handle words it never saw: their word embedding is ``<unk>``'s, but their
spelling (suffixes, capitals, digits, hyphens) still reaches the tagger.  Word dropout
(training words replaced by ``<unk>`` with probability ``p``) teaches the network to use it.

The character encoder runs once per *distinct* word of a batch: a
:class:`~rnnkit.text.chars.CharBatch` holds the character ids of the U distinct words
(U, Lc), their lengths (U,) and, for every position of the batch, which of them it is (B, T);
:meth:`rnnkit.text.chars.CharTable.batch` builds one.  The word embedding, recurrent stack
and output layer are built by :class:`~rnnkit.nn.word_rnn.WordRNN` (shared with the
classifier); the character encoder joins them through :meth:`SequenceTagger.add_features`.

>>> cfg = TaggerConfig(vocab_size=20, num_tags=4, embed_size=6, hidden_size=5,
...                    char_vocab_size=10, char_embed_size=3, char_hidden_size=4)
>>> model = SequenceTagger(cfg, rng=0)
>>> chars = CharBatch(np.array([[3, 4, 0], [5, 6, 7]]), np.array([2, 3]),
...                   np.array([[0, 1, 0], [1, 0, 0]]))
>>> logits, cache = model.forward(np.array([[4, 5, 4], [5, 4, 0]]), [3, 2], chars)
>>> logits.shape
(2, 3, 4)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ...checks import check_array, check_ids, check_lengths, config_from_dict
from ...errors import ConfigError
from ...nn import init as initializers
from ...nn.layers import Embedding
from ...nn.losses import softmax_cross_entropy
from ...nn.module import Module
from ...nn.pooling import pool_backward, pool_forward
from ...nn.recurrent import make_recurrent
from ...nn.word_rnn import (
    PAD_ID,
    WordRNN,
    check_batch,
    check_common,
    word_dropout,
)
from ...text.chars import CharBatch


@dataclass
class TaggerConfig:
    """Everything needed to rebuild a :class:`SequenceTagger` (saved as JSON)."""

    vocab_size: int
    num_tags: int
    cell: str = "lstm"
    embed_size: int = 100
    hidden_size: int = 128
    num_layers: int = 1
    bidirectional: bool = True
    dropout: float = 0.0  # between recurrent layers and before the output layer
    embed_dropout: float = 0.0  # on the word (+ character) features
    word_dropout: float = 0.0  # training words replaced by <unk> with this probability
    freeze_embeddings: bool = False  # (weight decay still applies)
    embed_init: str = "uniform"  # "uniform": U(-0.1, 0.1); "normal": N(0, 1) as in PyTorch
    char_vocab_size: int = 0  # 0: no character encoder
    char_cell: str = "lstm"
    char_embed_size: int = 32
    char_hidden_size: int = 32
    dtype: str = "float32"
    dropout_embed: float = 0.0  # whole words: rows of the embedding matrix, per batch
    weight_drop: float = 0.0  # DropConnect on every W_h, one mask per batch
    locked: bool = False  # every dropout mask over time drawn once per sequence

    def __post_init__(self):
        check_common(self, "TaggerConfig")
        if not isinstance(self.num_tags, int) or self.num_tags < 1:
            raise ConfigError(f"TaggerConfig: num_tags must be a positive integer, got "
                              f"{self.num_tags!r}")
        if self.char_cell not in ("rnn", "gru", "lstm"):
            raise ConfigError(f"TaggerConfig: char_cell must be rnn, gru or lstm, got "
                              f"{self.char_cell!r}")
        for k in ("char_vocab_size", "char_embed_size", "char_hidden_size"):
            v = getattr(self, k)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ConfigError(f"TaggerConfig: {k} must be an integer >= 0, got {v!r}")
        if self.char_vocab_size and (self.char_embed_size < 1 or self.char_hidden_size < 1):
            raise ConfigError("TaggerConfig: the character encoder needs char_embed_size and "
                              "char_hidden_size >= 1")

    @property
    def char_features(self) -> int:
        return 2 * self.char_hidden_size if self.char_vocab_size else 0

    @classmethod
    def from_dict(cls, d: dict) -> TaggerConfig:
        return config_from_dict(cls, d, "tagger")

    def to_dict(self) -> dict:
        return asdict(self)


class CharEncoder(Module):
    """A word's spelling -> one vector: embedding -> bidirectional RNN -> fwd final ⊕ bwd final.

    ``forward(ids (U, Lc), lengths (U,)) -> (U, 2Hc)``.
    """

    def __init__(self, vocab_size: int, embed_size: int, hidden_size: int, cell: str = "lstm",
                 *, dtype="float32", rng=None):
        super().__init__()
        rng = initializers.as_rng(rng)
        self.embed = self.add_module("embed", Embedding(
            vocab_size, embed_size, init="uniform", init_scale=0.1, padding_idx=PAD_ID,
            dtype=dtype, rng=rng))
        self.rnn = self.add_module("rnn", make_recurrent(
            cell, embed_size, hidden_size, 1, bidirectional=True, dtype=dtype, rng=rng))

    def forward(self, ids, lengths):
        emb, emb_cache = self.embed.forward(ids)  # (U, Lc, Ec)
        h, _, rnn_cache = self.rnn.forward(emb, lengths=lengths)  # (U, Lc, 2Hc)
        v, pool_cache = pool_forward(h, lengths, "last", bidirectional=True)  # (U, 2Hc)
        return v, (emb_cache, rnn_cache, pool_cache)

    def backward(self, dv, cache) -> None:
        emb_cache, rnn_cache, pool_cache = cache
        dx, _ = self.rnn.backward(pool_backward(dv, pool_cache), rnn_cache)
        self.embed.backward(dx, emb_cache)


class SequenceTagger(WordRNN):
    """Many-to-many network: one tag per word.  See the module docstring."""

    kind = "tagger"

    def __init__(self, cfg: TaggerConfig, rng=None):
        super().__init__(cfg, cfg.num_tags, rng)

    def add_features(self, rng: np.random.Generator) -> int:
        """The character encoder, if ``cfg.char_vocab_size``: its 2Hc features per word."""
        cfg = self.cfg
        self.chars = None
        if cfg.char_vocab_size:
            self.chars = self.add_module("chars", CharEncoder(
                cfg.char_vocab_size, cfg.char_embed_size, cfg.char_hidden_size, cfg.char_cell,
                dtype=cfg.dtype, rng=rng))
        return cfg.char_features

    def _check_chars(self, chars, B: int, T: int) -> CharBatch:
        if self.chars is None:
            return None
        if chars is None:
            raise ValueError("SequenceTagger: this model has a character encoder; pass chars "
                             "(a CharBatch, see rnnkit.text.chars.CharTable)")
        ids = check_ids("SequenceTagger", "chars.ids", chars.ids, self.cfg.char_vocab_size)
        if ids.ndim != 2 or ids.shape[0] == 0 or ids.shape[1] == 0:
            raise ValueError(f"SequenceTagger: expected chars.ids of shape (U, Lc), got "
                             f"{ids.shape}")
        U, Lc = ids.shape
        lengths = check_lengths("SequenceTagger", chars.lengths, U, Lc)
        index = check_array("SequenceTagger", "chars.index", chars.index, (B, T))
        index = check_ids("SequenceTagger", "chars.index", index, U)
        return CharBatch(ids, lengths, index)

    # -- forward / backward -----------------------------------------------------------
    def forward(self, ids, lengths=None, chars: CharBatch | None = None, *,
                rng: np.random.Generator | None = None):
        """``ids`` (B, T) padded with 0, ``lengths`` (B,), ``chars`` -> ``(logits (B, T, K),
        cache)``; the logits at padded steps are meaningless (they are masked in the loss)."""
        cfg = self.cfg
        ids, lengths = check_batch("SequenceTagger", ids, lengths, cfg.vocab_size)
        B, T = ids.shape
        chars = self._check_chars(chars, B, T)
        rng = rng if rng is not None else np.random.default_rng()
        if self.training:
            ids = word_dropout(ids, lengths, cfg.word_dropout, rng)
        x, emb_cache = self.embed.forward(ids, cfg.dropout_embed, rng)  # (B, T, E)
        char_cache = None
        if chars is not None:
            c, enc_cache = self.chars.forward(chars.ids, chars.lengths)  # (U, 2Hc)
            x = np.concatenate([x, c[chars.index]], axis=-1)  # (B, T, E + 2Hc)
            char_cache = (enc_cache, chars.index, c.shape)
        x, m_e = self.drop_e.forward(x, rng, cfg.locked)
        h, _, rnn_cache = self.rnn.forward(x, lengths=lengths, rng=rng)  # (B, T, dirs*H)
        h, m_o = self.drop_o.forward(h, rng, cfg.locked)
        logits, out_cache = self.out.forward(h)  # (B, T, K)
        return logits, (emb_cache, char_cache, m_e, rnn_cache, m_o, out_cache, lengths)

    def backward(self, dlogits, cache) -> None:
        """Accumulate parameter gradients from ``dlogits`` (B, T, K)."""
        emb_cache, char_cache, m_e, rnn_cache, m_o, out_cache, lengths = cache
        dh = self.drop_o.backward(self.out.backward(dlogits, out_cache), m_o)
        dx, _ = self.rnn.backward(dh, rnn_cache)
        dx = self.drop_e.backward(dx, m_e)  # (B, T, E [+ 2Hc])
        E = self.cfg.embed_size
        if char_cache is not None:
            enc_cache, index, shape = char_cache
            T = index.shape[1]
            real = np.arange(T)[None, :] < lengths[:, None]  # (B, T)
            dc = np.zeros(shape, dx.dtype)  # (U, 2Hc)
            np.add.at(dc, index[real], dx[..., E:][real])
            self.chars.backward(dc, enc_cache)
        if not self.cfg.freeze_embeddings:
            self.embed.backward(np.ascontiguousarray(dx[..., :E]), emb_cache)

    def loss(self, ids, lengths, tags, chars: CharBatch | None = None, *, rng=None,
             backward: bool = True):
        """Mean cross-entropy over the real steps; returns ``(mean_loss, n_tokens)``."""
        logits, cache = self.forward(ids, lengths, chars, rng=rng)
        lengths = cache[-1]
        T = logits.shape[1]
        mask = np.arange(T)[None, :] < lengths[:, None]  # (B, T)
        tags = np.where(mask, np.asarray(tags), 0)  # whatever pads the targets, it is masked
        loss, dlogits, n = softmax_cross_entropy(logits, tags, mask)
        if backward:
            self.backward(dlogits, cache)
        return loss, n

    def predict_proba(self, ids, lengths=None, chars: CharBatch | None = None) -> np.ndarray:
        """Tag probabilities (B, T, K), in evaluation mode (no dropout)."""
        return self._predict_proba(ids, lengths, chars)
