"""Encoder--decoder (sequence-to-sequence) model with optional Luong-style attention.

Encoder: embedding -> (bidirectional) RNN/GRU/LSTM stack over the source ``x`` (B, S) with its
``lengths``; its outputs are the *memory* (B, S, dirs*He) and its final state per layer the
context ``c`` that becomes the decoder's initial state through the *bridge*::

    concat  s_l = [h_l^fwd ; h_l^bwd]                     (dirs*He == Hd)
    linear  s   = tanh([all layers' final h] W_bh + b_bh)  (c of an LSTM: no tanh)
    zero    s   = 0                                        (attention carries the source)

Decoder, one step (Luong et al. 2015, attention *after* the recurrent layer)::

    x_t  = E[y_{t-1}]            or  [E[y_{t-1}] ; h~_{t-1}]        (input feeding)
    h_t  = RNN(x_t, h_{t-1})
    c_t, a_t = attention(h_t, memory, mask)                          (see attention.py)
    h~_t = tanh([c_t ; h_t] W_c + b_c)                               (h~_t = h_t without attention)
    p(y_t | y_<t, x) = softmax(h~_t W_o + b_o)

``y_0 = <bos>`` and generation stops at ``<eos>``.  Training uses teacher forcing (``y_{t-1}``
is the reference) or scheduled sampling (each row, each step, feeds the model's own previous
argmax with probability ``sample_prob``; no gradient flows through that choice).

Two decoder drivers compute the same numbers: with teacher forcing and no input feeding the
recurrent layer runs over the whole target in one call and attention over every step in a few
batched multiplies; otherwise the decoder runs step by step, keeping each step's cache, and its
backward walks the steps in reverse (BPTT through ``h``, ``c`` and the fed ``h~``).

>>> cfg = Seq2SeqConfig(src_vocab_size=9, tgt_vocab_size=7, embed_size=4, hidden_size=5,
...                     attention="general", bidirectional=True)
>>> model = Seq2Seq(cfg, rng=0)
>>> src = np.array([[4, 5, 6], [7, 8, 0]]); lengths = np.array([3, 2])
>>> logits, cache = model.forward(src, lengths, np.array([[2, 4], [2, 5]]))
>>> logits.shape, cfg.decoder_hidden_size, cfg.bridge
((2, 2, 7), 10, 'concat')
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import NamedTuple

import numpy as np

from ...checks import check_ids, check_lengths, config_from_dict
from ...decode import beam_search
from ...errors import ConfigError, ShapeError
from ...nn import init as initializers
from ...nn.attention import KINDS as ATTENTION_KINDS
from ...nn.attention import Attention
from ...nn.cells.lstm import LSTMState
from ...nn.layers import Embedding, Linear
from ...nn.layers.dropout import dropout, dropout_backward
from ...nn.losses import log_softmax, softmax_cross_entropy
from ...nn.module import Module
from ...nn.recurrent import make_recurrent

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3


@dataclass
class Seq2SeqConfig:
    """Everything needed to rebuild a :class:`Seq2Seq` (saved as JSON in checkpoints).

    ``decoder_hidden_size`` defaults to ``hidden_size * dirs``; ``bridge="auto"`` resolves to
    ``"concat"`` when that matches the encoder's concatenated state, else ``"linear"``;
    ``attention_size`` (additive only) defaults to the decoder size.
    """

    src_vocab_size: int
    tgt_vocab_size: int
    cell: str = "lstm"
    embed_size: int = 64
    hidden_size: int = 128
    decoder_hidden_size: int | None = None
    num_layers: int = 1
    bidirectional: bool = False
    bridge: str = "auto"  # "auto" | "concat" | "linear" | "zero"
    attention: str = "none"  # "none" | "dot" | "general" | "additive"
    attention_size: int | None = None
    input_feed: bool = False
    dropout: float = 0.0
    init: str = "default"  # "default" (Xavier / orthogonal) | "uniform" (+-init_scale)
    init_scale: float = 0.1
    dtype: str = "float32"
    dropout_embed: float = 0.0  # whole words of both embeddings, one draw per batch
    weight_drop: float = 0.0  # DropConnect on every W_h of encoder and decoder, per batch
    locked: bool = False  # each dropout mask over time drawn once per sequence

    def __post_init__(self):  # noqa: C901 -- one flat check per option, read top to bottom
        if self.cell not in ("rnn", "gru", "lstm"):
            raise ConfigError(f"cell must be rnn, gru or lstm, got {self.cell!r}")
        for k in ("src_vocab_size", "tgt_vocab_size", "embed_size", "hidden_size",
                  "num_layers", "decoder_hidden_size", "attention_size"):
            v = getattr(self, k)
            if v is None and k in ("decoder_hidden_size", "attention_size"):
                continue
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"{k} must be a positive integer, got {v!r}")
        if self.tgt_vocab_size <= EOS_ID:
            raise ConfigError(f"tgt_vocab_size must exceed {EOS_ID} (the specials <pad> <unk> "
                              f"<bos> <eos> come first), got {self.tgt_vocab_size}")
        if self.attention not in ("none", *ATTENTION_KINDS):
            raise ConfigError(f"attention must be one of {['none', *ATTENTION_KINDS]}, got "
                              f"{self.attention!r}")
        if self.bridge not in ("auto", "concat", "linear", "zero"):
            raise ConfigError(f"bridge must be auto, concat, linear or zero, got {self.bridge!r}")
        for k in ("dropout", "dropout_embed", "weight_drop"):
            if not 0 <= getattr(self, k) < 1:
                raise ConfigError(f"{k} must be in [0, 1), got {getattr(self, k)!r}")
        if self.input_feed and (self.weight_drop or self.locked):
            raise ConfigError("weight_drop and locked need the decoder that reads the whole "
                              "target at once; input_feed decodes step by step")
        if self.init not in ("default", "uniform"):
            raise ConfigError(f"init must be 'default' or 'uniform', got {self.init!r}")
        if np.dtype(self.dtype) not in (np.float32, np.float64):
            raise ConfigError(f"dtype must be float32 or float64, got {self.dtype!r}")
        enc_out = self.hidden_size * (2 if self.bidirectional else 1)
        if self.decoder_hidden_size is None:
            self.decoder_hidden_size = enc_out
        if self.bridge == "auto":
            self.bridge = "concat" if self.decoder_hidden_size == enc_out else "linear"
        if self.bridge == "concat" and self.decoder_hidden_size != enc_out:
            raise ConfigError(f"bridge 'concat' needs decoder_hidden_size == {enc_out} (the "
                              f"encoder's concatenated state), got {self.decoder_hidden_size}")
        if self.attention == "none" and self.input_feed:
            raise ConfigError("input_feed needs attention (it feeds the attentional vector)")
        if self.attention == "none" and self.bridge == "zero":
            raise ConfigError("bridge 'zero' without attention would ignore the source")
        if self.attention == "dot" and self.decoder_hidden_size != enc_out:
            raise ConfigError(f"dot attention needs decoder_hidden_size == {enc_out} (the "
                              f"encoder output size), got {self.decoder_hidden_size}")
        if self.attention == "additive" and self.attention_size is None:
            self.attention_size = self.decoder_hidden_size

    @property
    def dirs(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def memory_size(self) -> int:
        return self.hidden_size * self.dirs

    @classmethod
    def from_dict(cls, d: dict) -> Seq2SeqConfig:
        return config_from_dict(cls, d, "seq2seq")

    def to_dict(self) -> dict:
        return asdict(self)


class Encoded(NamedTuple):
    """What the decoder needs of the source: ``memory`` (B, S, Hm), attention ``keys``,
    ``mask`` (B, S) of real positions."""

    memory: np.ndarray
    keys: np.ndarray | None
    mask: np.ndarray


class DecoderState(NamedTuple):
    """Recurrent state (L, B, Hd) (or ``LSTMState``) and the fed attentional vector (B, Hd)."""

    rnn: object
    feed: np.ndarray | None


def _reorder(state: DecoderState, idx: np.ndarray) -> DecoderState:
    """The states of the hypotheses ``idx`` (beam search)."""
    rnn = _map_state(lambda s: s[:, idx], state.rnn)
    return DecoderState(rnn, None if state.feed is None else state.feed[idx])


def _map_state(f, state):
    return LSTMState(f(state.h), f(state.c)) if isinstance(state, LSTMState) else f(state)


class Seq2Seq(Module):
    """Encoder--decoder; see the module docstring for the equations."""

    kind = "seq2seq"

    def __init__(self, cfg: Seq2SeqConfig, rng=None):
        super().__init__()
        self.cfg = cfg
        rng = initializers.as_rng(rng)
        dt, uni = cfg.dtype, cfg.init == "uniform"
        E, H, Hd, L, Hm = (cfg.embed_size, cfg.hidden_size, cfg.decoder_hidden_size,
                           cfg.num_layers, cfg.memory_size)
        emb = {"init": "uniform" if uni else "normal", "init_scale": cfg.init_scale,
               "dtype": dt, "rng": rng}
        rec = {"init": "uniform" if uni else "default", "init_scale": cfg.init_scale,
               "dtype": dt, "rng": rng, "dropout": cfg.dropout,
               "weight_drop": cfg.weight_drop, "locked": cfg.locked}
        lin = {"init": "uniform" if uni else "xavier", "init_scale": cfg.init_scale,
               "dtype": dt, "rng": rng}
        self.src_embed = self.add_module("src_embed", Embedding(cfg.src_vocab_size, E, **emb))
        self.encoder = self.add_module("encoder", make_recurrent(
            cfg.cell, E, H, L, bidirectional=cfg.bidirectional, **rec))
        self.bridge_h = self.bridge_c = None
        if cfg.bridge == "linear":
            self.bridge_h = self.add_module("bridge_h", Linear(L * Hm, L * Hd, **lin))
            if cfg.cell == "lstm":
                self.bridge_c = self.add_module("bridge_c", Linear(L * Hm, L * Hd, **lin))
        self.tgt_embed = self.add_module("tgt_embed", Embedding(cfg.tgt_vocab_size, E, **emb))
        feed = Hd if cfg.input_feed else 0
        self.decoder = self.add_module("decoder", make_recurrent(cfg.cell, E + feed, Hd, L,
                                                                 **rec))
        self.attention = self.combine = None
        if cfg.attention != "none":
            self.attention = self.add_module("attention", Attention(
                cfg.attention, Hd, Hm, cfg.attention_size, dtype=dt, rng=rng))
            self.combine = self.add_module("combine", Linear(Hm + Hd, Hd, **lin))
        self.out = self.add_module("out", Linear(Hd, cfg.tgt_vocab_size, **lin))

    # -- checks ---------------------------------------------------------------------------
    def _check_source(self, src, lengths):
        src = np.asarray(src)
        if src.ndim != 2 or 0 in src.shape:
            raise ShapeError(f"Seq2Seq: expected src of shape (B, S) with B, S >= 1, got "
                             f"{src.shape}")
        src = check_ids("Seq2Seq", "src", src, self.cfg.src_vocab_size)
        B, S = src.shape
        lengths = np.full(B, S) if lengths is None else check_lengths("Seq2Seq", lengths, B, S)
        return src, lengths

    def _check_target(self, tgt, B, name="tgt_in"):
        tgt = np.asarray(tgt)
        if tgt.ndim != 2 or tgt.shape[0] != B or tgt.shape[1] == 0:
            raise ShapeError(f"Seq2Seq: expected {name} of shape ({B}, T) with T >= 1, got "
                             f"{tgt.shape}")
        return check_ids("Seq2Seq", name, tgt, self.cfg.tgt_vocab_size)

    # -- encoder and bridge -----------------------------------------------------------------
    def encode(self, src, lengths=None, *, rng=None):
        """``src`` (B, S) ids, ``lengths`` (B,) -> ``(Encoded, decoder initial state, cache)``."""
        src, lengths = self._check_source(src, lengths)
        return self._encode(src, lengths, rng)

    def _encode(self, src, lengths, rng):
        cfg = self.cfg
        p = cfg.dropout if self.training else 0.0
        x, ecache = self.src_embed.forward(src, cfg.dropout_embed, rng)
        x, m_src = dropout(x, p, rng, locked=cfg.locked)
        memory, final, rcache = self.encoder.forward(x, lengths=lengths, rng=rng)
        mask = np.arange(src.shape[1])[None, :] < lengths[:, None]  # (B, S)
        keys = kcache = None
        if self.attention is not None:
            keys, kcache = self.attention.keys(memory)
        state0, bcache = self._bridge(final)
        feed = np.zeros((src.shape[0], cfg.decoder_hidden_size), memory.dtype) \
            if cfg.input_feed else None
        cache = (ecache, m_src, rcache, kcache, bcache)
        return Encoded(memory, keys, mask), DecoderState(state0, feed), cache

    def _bridge(self, final):
        """Encoder final state (L*dirs, B, H) -> decoder initial state (L, B, Hd)."""
        cfg = self.cfg
        L, dirs, Hd = cfg.num_layers, cfg.dirs, cfg.decoder_hidden_size
        if cfg.bridge == "zero":
            B = (final.h if isinstance(final, LSTMState) else final).shape[1]
            return self.decoder.initial_state(B), None
        if cfg.bridge == "concat":
            def cat(s):  # (L*dirs, B, H) -> (L, B, dirs*H)
                _, B, H = s.shape
                return s.reshape(L, dirs, B, H).transpose(0, 2, 1, 3).reshape(L, B, dirs * H)
            return _map_state(cat, final), None

        def flat(s):  # (L*dirs, B, H) -> (B, L*dirs*H)
            return s.transpose(1, 0, 2).reshape(s.shape[1], -1)

        def unflat(y):  # (B, L*Hd) -> (L, B, Hd)
            return np.ascontiguousarray(y.reshape(y.shape[0], L, Hd).transpose(1, 0, 2))

        if isinstance(final, LSTMState):
            yh, ch = self.bridge_h.forward(flat(final.h))
            yc, cc = self.bridge_c.forward(flat(final.c))
            np.tanh(yh, out=yh)
            return LSTMState(unflat(yh), unflat(yc)), (yh, ch, cc, final.h.shape)
        y, cache = self.bridge_h.forward(flat(final))
        np.tanh(y, out=y)
        return unflat(y), (y, cache, None, final.shape)

    def _bridge_backward(self, dstate0, bcache):
        cfg = self.cfg
        L, dirs = cfg.num_layers, cfg.dirs
        if cfg.bridge == "zero" or dstate0 is None:
            return None
        if cfg.bridge == "concat":
            def uncat(d):  # (L, B, dirs*H) -> (L*dirs, B, H)
                _, B, DH = d.shape
                H = DH // dirs
                return d.reshape(L, B, dirs, H).transpose(0, 2, 1, 3).reshape(L * dirs, B, H)
            return _map_state(uncat, dstate0)
        y, ch, cc, shape = bcache

        def flat(d):  # (L, B, Hd) -> (B, L*Hd)
            return d.transpose(1, 0, 2).reshape(d.shape[1], -1)

        def unflat(dx):  # (B, L*dirs*H) -> (L*dirs, B, H)
            return np.ascontiguousarray(dx.reshape(shape[1], shape[0], shape[2])
                                        .transpose(1, 0, 2))

        dh = self.bridge_h.backward(flat(dstate0.h if cc is not None else dstate0) * (1 - y * y),
                                    ch)
        if cc is None:
            return unflat(dh)
        dc = self.bridge_c.backward(flat(dstate0.c), cc)
        return LSTMState(unflat(dh), unflat(dc))

    def _encode_backward(self, dmemory, dkeys, dstate0, cache):
        ecache, m_src, rcache, kcache, bcache = cache
        if dkeys is not None:
            dmemory = dmemory + self.attention.keys_backward(dkeys, kcache)
        dfinal = self._bridge_backward(dstate0, bcache)
        dx, _ = self.encoder.backward(dmemory, rcache, dfinal)
        dx = dropout_backward(dx, m_src)
        self.src_embed.backward(dx, ecache)

    # -- decoder: the attentional output of the recurrent outputs ----------------------------
    def _attend(self, h, enc: Encoded):
        """``h`` (B, T, Hd) -> ``(h~ (B, T, Hd), weights (B, T, S) or None, cache)``."""
        if self.attention is None:
            return h, None, None
        ctx, a, acache = self.attention.attend(h, enc.keys, enc.memory, enc.mask)
        z = np.concatenate([ctx, h], axis=-1)  # (B, T, Hm + Hd)
        ht, zcache = self.combine.forward(z)
        np.tanh(ht, out=ht)
        return ht, a, (acache, zcache, ht)

    def _attend_backward(self, dht, cache):
        """-> ``(dh, dkeys, dmemory)``; ``dkeys``/``dmemory`` are None without attention."""
        if cache is None:
            return dht, None, None
        acache, zcache, ht = cache
        dz = self.combine.backward(dht * (1 - ht * ht), zcache)
        Hm = self.cfg.memory_size
        dq, dkeys, dmemory = self.attention.attend_backward(dz[..., :Hm], acache)
        return dz[..., Hm:] + dq, dkeys, dmemory

    # -- decoder drivers ------------------------------------------------------------------
    def _decode_parallel(self, tgt_in, enc, state0, rng):
        cfg = self.cfg
        p = cfg.dropout if self.training else 0.0
        x, ecache = self.tgt_embed.forward(tgt_in, cfg.dropout_embed, rng)
        x, m_tgt = dropout(x, p, rng, locked=cfg.locked)
        h, _, rcache = self.decoder.forward(x, state0.rnn, rng=rng)
        ht, a, acache = self._attend(h, enc)
        hd, m_out = dropout(ht, p, rng, locked=cfg.locked)
        logits, ocache = self.out.forward(hd)
        return logits, a, ("parallel", ecache, m_tgt, rcache, acache, m_out, ocache)

    def _decode_steps(self, tgt_in, enc, state0, rng, sample_prob):
        p = self.cfg.dropout if self.training else 0.0
        W_e, W_o, b_o = self.tgt_embed.param["W"], self.out.param["W"], self.out.param["b"]
        B, T = tgt_in.shape
        fed = tgt_in.copy()  # the tokens actually fed (scheduled sampling replaces some)
        state, feed = state0
        scale = None  # embedding dropout: one row scale per word for the whole batch
        if self.training and self.cfg.dropout_embed:
            scale = self.tgt_embed.row_scale(self.cfg.dropout_embed, rng)  # (V,)
        steps, logits, HD, masks, weights = [], [], [], [], []
        for t in range(T):
            if t > 0 and sample_prob > 0:
                own = rng.random(B) < sample_prob
                fed[own, t] = logits[-1][own].argmax(axis=-1)
            x = W_e[fed[:, t]] if scale is None else W_e[fed[:, t]] * scale[fed[:, t], None]
            x, m_tgt = dropout(x, p, rng)  # (B, E)
            if feed is not None:
                x = np.concatenate([x, feed], axis=-1)
            h, state, rcache = self.decoder.forward(x[:, None], state, rng=rng)
            ht, a, acache = self._attend(h, enc)  # (B, 1, Hd)
            if feed is not None:
                feed = ht[:, 0]
            hd, m_out = dropout(ht[:, 0], p, rng)
            logits.append(hd @ W_o + b_o)  # (B, V)
            HD.append(hd)
            masks.append((m_tgt, m_out))
            weights.append(a)
            steps.append((rcache, acache))
        logits = np.stack(logits, axis=1)  # (B, T, V)
        HD = np.stack(HD, axis=1)  # (B, T, Hd)
        a = None if self.attention is None else np.concatenate(weights, axis=1)  # (B, T, S)
        return logits, a, ("steps", fed if scale is None else (fed, scale), steps, masks, HD)

    def _decode_backward(self, dlogits, cache, enc):
        """-> ``(dmemory, dkeys, dstate0)``."""
        if cache[0] == "parallel":
            _, ecache, m_tgt, rcache, acache, m_out, ocache = cache
            dht = self.out.backward(dlogits, ocache)
            if m_out is not None:
                dht *= m_out
            dh, dkeys, dmemory = self._attend_backward(dht, acache)
            dx, dstate0 = self.decoder.backward(dh, rcache)
            dx = dropout_backward(dx, m_tgt)
            self.tgt_embed.backward(dx, ecache)
            return dmemory, dkeys, dstate0
        _, fed, steps, masks, HD = cache
        E = self.cfg.embed_size
        dHD = self.out.backward(dlogits, HD)  # (B, T, Hd)
        B, T, _ = dHD.shape
        dX = np.zeros((B, T, E), dHD.dtype)
        dmemory = dkeys = None
        if self.attention is not None:
            dmemory, dkeys = np.zeros_like(enc.memory), np.zeros_like(enc.keys)
        dfeed = dstate = None
        for t in range(T - 1, -1, -1):
            rcache, acache = steps[t]
            m_tgt, m_out = masks[t]
            dht = dropout_backward(dHD[:, t], m_out)
            if dfeed is not None:
                dht = dht + dfeed
            dh, dk, dm = self._attend_backward(dht[:, None], acache)
            if dk is not None:
                dkeys += dk
                dmemory += dm
            dx, dstate = self.decoder.backward(dh, rcache, dstate)
            if self.cfg.input_feed:
                dfeed = dx[:, 0, E:]
            dX[:, t] = dropout_backward(dx[:, 0, :E], m_tgt)
        self.tgt_embed.backward(dX, fed)
        return dmemory, dkeys, dstate

    # -- training API -----------------------------------------------------------------------
    def forward(self, src, lengths, tgt_in, *, rng=None, sample_prob: float = 0.0):
        """Logits of every target step: ``src`` (B, S), ``lengths`` (B,), ``tgt_in`` (B, T)
        (``<bos> y_1 .. y_{T-1}``) -> ``(logits (B, T, V), cache)``.  ``cache["weights"]`` holds
        the attention weights (B, T, S) (None without attention)."""
        src, lengths = self._check_source(src, lengths)
        tgt_in = self._check_target(tgt_in, src.shape[0])
        if not 0.0 <= sample_prob <= 1.0:
            raise ValueError(f"Seq2Seq: sample_prob must be in [0, 1], got {sample_prob}")
        rng = initializers.as_rng(rng)
        enc, state0, ecache = self._encode(src, lengths, rng)
        if self.cfg.input_feed or (sample_prob > 0 and self.training):
            if self.training and (self.cfg.weight_drop or self.cfg.locked):
                raise ConfigError("weight_drop and locked are not available with scheduled "
                                  "sampling, which decodes step by step")
            logits, a, dcache = self._decode_steps(tgt_in, enc, state0, rng,
                                                   sample_prob if self.training else 0.0)
        else:
            logits, a, dcache = self._decode_parallel(tgt_in, enc, state0, rng)
        return logits, {"enc": enc, "ecache": ecache, "dcache": dcache, "weights": a}

    def backward(self, dlogits, cache) -> None:
        """Accumulate every parameter gradient from ``dlogits`` (B, T, V)."""
        enc = cache["enc"]
        dmemory, dkeys, dstate0 = self._decode_backward(dlogits, cache["dcache"], enc)
        if dmemory is None:
            dmemory = np.zeros_like(enc.memory)
        self._encode_backward(dmemory, dkeys, dstate0, cache["ecache"])

    def loss(self, src, lengths, tgt_in, tgt_out, *, rng=None, sample_prob: float = 0.0,
             backward: bool = True):
        """Mean cross-entropy over the real (non-``<pad>``) tokens of ``tgt_out`` (B, T).
        Returns ``(loss, n_tokens)``; with ``backward`` the gradients are accumulated."""
        logits, cache = self.forward(src, lengths, tgt_in, rng=rng, sample_prob=sample_prob)
        tgt_out = self._check_target(tgt_out, logits.shape[0], "tgt_out")
        if tgt_out.shape != logits.shape[:2]:
            raise ShapeError(f"Seq2Seq: expected tgt_out of shape {logits.shape[:2]}, got "
                             f"{tgt_out.shape}")
        loss, dlogits, n = softmax_cross_entropy(logits, tgt_out, tgt_out != PAD_ID)
        if backward:
            self.backward(dlogits, cache)
        return loss, n

    # -- generation ---------------------------------------------------------------------------
    def step(self, tokens, state: DecoderState, enc: Encoded):
        """One decoder step for generation, no cache: ``tokens`` (K,) ->
        ``(logits (K, V), state, weights (K, S) or None)``."""
        x = self.tgt_embed.param["W"][tokens]
        if state.feed is not None:
            x = np.concatenate([x, state.feed], axis=-1)
        h, rnn = self.decoder.step(x, state.rnn)
        ht, a, _ = self._attend(h[:, None], enc)
        ht = ht[:, 0]
        logits = ht @ self.out.param["W"] + self.out.param["b"]
        return logits, DecoderState(rnn, ht if state.feed is not None else None), \
            (None if a is None else a[:, 0])

    def generate(self, src, lengths=None, *, max_len: int = 50, temperature: float = 0.0,
                 rng=None):
        """Greedy (``temperature == 0``) or sampled decoding of a batch.

        Returns ``(tokens, weights)``: per row the generated ids *without* the final ``<eos>``
        (a row that reaches ``max_len`` tokens without ``<eos>`` stops there), and its
        attention weights (n_steps, S_b) (``None`` without attention).
        """
        if max_len < 1:
            raise ValueError(f"max_len must be at least 1, got {max_len}")
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        src, lengths = self._check_source(src, lengths)
        rng = initializers.as_rng(rng)
        was = self.training
        self.eval()
        try:
            enc, state, _ = self._encode(src, lengths, rng)
            B = src.shape[0]
            tok = np.full(B, BOS_ID)
            out = np.zeros((B, max_len), np.int64)
            steps = np.full(B, max_len)  # tokens emitted, <eos> included
            att = []
            done = np.zeros(B, bool)
            for t in range(max_len):
                logits, state, a = self.step(tok, state, enc)
                if temperature == 0:
                    tok = logits.argmax(axis=-1)
                else:
                    z = log_softmax(logits.astype(np.float64) / temperature)
                    g = -np.log(-np.log(rng.random(z.shape)))  # Gumbel-max sampling
                    tok = (z + g).argmax(axis=-1)
                out[:, t] = tok
                att.append(a)
                ended = ~done & (tok == EOS_ID)
                steps[ended] = t + 1
                done |= ended
                if done.all():
                    break
        finally:
            self.train(was)
        tokens, weights = [], []
        for b in range(B):
            n = int(steps[b])
            k = n - 1 if done[b] else n
            tokens.append(out[b, :k].tolist())
            weights.append(None if self.attention is None else
                           np.stack([att[t][b, : lengths[b]] for t in range(n)]))
        return tokens, weights

    def beam_search(self, src, *, beam: int = 5, max_len: int = 50, alpha: float = 1.0):
        """Beam search for one source ``src`` (S,) ids: :func:`rnnkit.decode.beam_search`
        (its stopping and length-normalisation rule) from ``<bos>`` to ``<eos>``.

        Returns :class:`rnnkit.decode.Hypothesis` objects, best first: ``tokens`` without the
        ``<eos>``, ``logp``, ``finished``, and ``weights``, the attention weights
        (len(tokens) + finished, S) (``None`` without attention).  Ranking uses
        ``logp / len ** alpha`` with ``len`` counting the ``<eos>``.  With ``beam == 1`` this
        is greedy decoding.
        """
        if not isinstance(beam, (int, np.integer)) or beam < 1:
            raise ValueError(f"beam width must be at least 1, got {beam!r}")
        if max_len < 1:
            raise ValueError(f"max_len must be at least 1, got {max_len}")
        src = np.asarray(src)
        if src.ndim != 1:
            raise ShapeError(f"Seq2Seq: beam_search expects one source (S,), got {src.shape}")
        src, lengths = self._check_source(src[None, :], None)
        was = self.training
        self.eval()
        try:
            enc, state, _ = self._encode(src, lengths, None)

            def step(tokens, state):
                n = len(tokens)  # the live hypotheses share the one source
                e = Encoded(*(None if x is None else np.repeat(x[:1], n, axis=0)
                              for x in enc))
                return self.step(tokens, state, e)

            return beam_search(step, state, BOS_ID, beam, max_len, eos=EOS_ID, alpha=alpha,
                               reorder=_reorder, trace=True)
        finally:
            self.train(was)
