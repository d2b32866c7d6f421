"""One-to-many: a decoder that generates a sequence from a fixed input vector ``f``.

``f`` (B, C) is a feature vector, or the one-hot code of a class label (:func:`one_hot`)::

    h_0 = tanh(f W_h + b_h)          (per layer; an LSTM's c_0 = f W_c + b_c)
    x_t = [E[y_{t-1}] ; f]            (``feed_condition``; else x_t = E[y_{t-1}])
    h_t = RNN(x_t, h_{t-1})           p(y_t | y_<t, f) = softmax(h_t W_o + b_o)

``y_0 = <bos>``; generation stops at ``<eos>`` (id 3) or after ``max_len`` tokens.  Trained
with teacher forcing; the whole target runs through the recurrent layer in one call.

>>> model = ConditionedGenerator(ConditionedConfig(vocab_size=6, cond_size=2), rng=0)
>>> logits, cache = model.forward(one_hot([0, 1], 2), np.array([[2, 4, 5], [2, 5, 5]]))
>>> logits.shape, len(model.generate(one_hot([1], 2), max_len=4)[0]) <= 4
((2, 3, 6), True)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ...checks import check_array, check_ids, config_from_dict
from ...decode import beam_search, generate
from ...errors import ConfigError, ShapeError
from ...nn import init as initializers
from ...nn.cells.lstm import LSTMState
from ...nn.layers import Embedding, Linear
from ...nn.losses import softmax_cross_entropy
from ...nn.module import Module
from ...nn.recurrent import make_recurrent
from ..seq2seq.model import BOS_ID, EOS_ID, PAD_ID


def one_hot(labels, num_classes: int, dtype="float32") -> np.ndarray:
    """Class labels (B,) -> one-hot rows (B, num_classes)."""
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iu" or labels.ndim != 1:
        raise ShapeError(f"one_hot: expected integer labels of shape (B,), got {labels.dtype} "
                         f"{labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ShapeError(f"one_hot: labels must be in 0..{num_classes - 1}, got "
                         f"{int(labels.min())}..{int(labels.max())}")
    out = np.zeros((labels.size, num_classes), dtype)
    out[np.arange(labels.size), labels] = 1
    return out


@dataclass
class ConditionedConfig:
    """Construction arguments of a :class:`ConditionedGenerator` (JSON in checkpoints)."""

    vocab_size: int
    cond_size: int
    cell: str = "gru"
    embed_size: int = 32
    hidden_size: int = 64
    num_layers: int = 1
    feed_condition: bool = True
    dropout: float = 0.0
    dtype: str = "float32"

    def __post_init__(self):
        if self.cell not in ("rnn", "gru", "lstm"):
            raise ConfigError(f"cell must be rnn, gru or lstm, got {self.cell!r}")
        for k in ("vocab_size", "cond_size", "embed_size", "hidden_size", "num_layers"):
            v = getattr(self, k)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"{k} must be a positive integer, got {v!r}")
        if self.vocab_size <= EOS_ID:
            raise ConfigError(f"vocab_size must exceed {EOS_ID}, got {self.vocab_size}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout!r}")

    @classmethod
    def from_dict(cls, d: dict) -> ConditionedConfig:
        return config_from_dict(cls, d, "conditioned-generator")

    def to_dict(self) -> dict:
        return asdict(self)


class ConditionedGenerator(Module):
    """A sequence decoder whose initial state (and, optionally, every input) is a function of
    a fixed vector; see the module docstring."""

    kind = "conditioned"

    def __init__(self, cfg: ConditionedConfig, rng=None):
        super().__init__()
        self.cfg = cfg
        rng = initializers.as_rng(rng)
        C, E, H, L, dt = cfg.cond_size, cfg.embed_size, cfg.hidden_size, cfg.num_layers, cfg.dtype
        self.init_h = self.add_module("init_h", Linear(C, L * H, dtype=dt, rng=rng))
        self.init_c = None
        if cfg.cell == "lstm":
            self.init_c = self.add_module("init_c", Linear(C, L * H, dtype=dt, rng=rng))
        self.embed = self.add_module("embed", Embedding(cfg.vocab_size, E, dtype=dt, rng=rng))
        D = E + (C if cfg.feed_condition else 0)
        self.rnn = self.add_module("rnn", make_recurrent(cfg.cell, D, H, L, dropout=cfg.dropout,
                                                         dtype=dt, rng=rng))
        self.out = self.add_module("out", Linear(H, cfg.vocab_size, dtype=dt, rng=rng))

    def _check_cond(self, cond):
        return check_array("ConditionedGenerator", "cond", cond, ("B", self.cfg.cond_size)
                           ).astype(self.cfg.dtype, copy=False)

    def initial_state(self, cond):
        """``cond`` (B, C) -> the recurrent state (L, B, H) (``LSTMState`` for an LSTM)."""
        state, _ = self._initial_state(self._check_cond(cond))
        return state

    def _initial_state(self, cond):
        L, H = self.cfg.num_layers, self.cfg.hidden_size

        def unflat(y):  # (B, L*H) -> (L, B, H)
            return np.ascontiguousarray(y.reshape(-1, L, H).transpose(1, 0, 2))

        yh, ch = self.init_h.forward(cond)
        np.tanh(yh, out=yh)
        if self.init_c is None:
            return unflat(yh), (yh, ch, None)
        yc, cc = self.init_c.forward(cond)
        return LSTMState(unflat(yh), unflat(yc)), (yh, ch, cc)

    def forward(self, cond, tgt_in, *, rng=None):
        """``cond`` (B, C), ``tgt_in`` (B, T) = ``<bos> y_1 .. y_{T-1}`` ->
        ``(logits (B, T, V), cache)``."""
        cond = self._check_cond(cond)
        tgt_in = np.asarray(tgt_in)
        B = cond.shape[0]
        if tgt_in.ndim != 2 or tgt_in.shape[0] != B or tgt_in.shape[1] == 0:
            raise ShapeError(f"ConditionedGenerator: expected tgt_in of shape ({B}, T), got "
                             f"{tgt_in.shape}")
        tgt_in = check_ids("ConditionedGenerator", "tgt_in", tgt_in, self.cfg.vocab_size)
        rng = initializers.as_rng(rng)
        state0, icache = self._initial_state(cond)
        x, ecache = self.embed.forward(tgt_in)
        T = tgt_in.shape[1]
        if self.cfg.feed_condition:
            x = np.concatenate([x, np.broadcast_to(cond[:, None], (B, T, cond.shape[1]))], -1)
        h, _, rcache = self.rnn.forward(x, state0, rng=rng)
        logits, ocache = self.out.forward(h)
        return logits, (icache, ecache, rcache, ocache)

    def backward(self, dlogits, cache):
        """Accumulate parameter gradients; returns ``dcond`` (B, C)."""
        (yh, ch, cc), ecache, rcache, ocache = cache
        E = self.cfg.embed_size
        dh = self.out.backward(dlogits, ocache)
        dx, dstate0 = self.rnn.backward(dh, rcache)
        self.embed.backward(dx[..., :E], ecache)

        def flat(d):  # (L, B, H) -> (B, L*H)
            return d.transpose(1, 0, 2).reshape(d.shape[1], -1)

        dtop = dstate0.h if cc is not None else dstate0
        dcond = self.init_h.backward(flat(dtop) * (1 - yh * yh), ch)
        if cc is not None:
            dcond = dcond + self.init_c.backward(flat(dstate0.c), cc)
        if self.cfg.feed_condition:
            dcond = dcond + dx[..., E:].sum(axis=1)
        return dcond

    def loss(self, cond, tgt_in, tgt_out, *, rng=None, backward: bool = True):
        """Mean cross-entropy over the non-``<pad>`` tokens of ``tgt_out``: ``(loss, n)``."""
        logits, cache = self.forward(cond, tgt_in, rng=rng)
        tgt_out = np.asarray(tgt_out)
        loss, dlogits, n = softmax_cross_entropy(logits, tgt_out, tgt_out != PAD_ID)
        if backward:
            self.backward(dlogits, cache)
        return loss, n

    # -- generation ---------------------------------------------------------------------------
    def step_fn(self, cond_row):
        """A ``step(token_ids (K,), state) -> (logits (K, V), state)`` for one condition
        (C,), for :func:`rnnkit.decode.generate` and :func:`rnnkit.decode.beam_search`."""
        W_e, W_o, b_o = self.embed.param["W"], self.out.param["W"], self.out.param["b"]
        feed = self.cfg.feed_condition

        def step(tokens, state):
            x = W_e[np.asarray(tokens)]
            if feed:
                x = np.concatenate([x, np.broadcast_to(cond_row, (x.shape[0], cond_row.size))],
                                   -1)
            h, state = self.rnn.step(x, state)
            return h @ W_o + b_o, state

        return step

    def generate(self, cond, *, max_len: int = 50, temperature: float = 0.0, beam: int = 0,
                 alpha: float = 1.0, rng=None) -> list[list[int]]:
        """One sequence per row of ``cond`` (B, C), without the final ``<eos>``: greedy
        (``temperature == 0``), sampled, or the best of a beam search (``beam >= 1``)."""
        cond = self._check_cond(cond)
        if max_len < 1:
            raise ValueError(f"max_len must be at least 1, got {max_len}")
        rng = initializers.as_rng(rng)
        was = self.training
        self.eval()
        try:
            out = []
            for b in range(cond.shape[0]):
                step = self.step_fn(cond[b])
                state, _ = self._initial_state(cond[b:b + 1])
                if beam:  # tokens without the <eos>
                    seq = beam_search(step, state, BOS_ID, beam, max_len, eos=EOS_ID,
                                      alpha=alpha)[0].tokens
                else:
                    seq = list(generate(step, state, BOS_ID, max_len, rng,
                                        temperature=temperature, stop=EOS_ID))
                    seq = seq[:-1] if seq and seq[-1] == EOS_ID else seq
                out.append(seq)
            return out
        finally:
            self.train(was)


def load_conditioned(path):
    """``(model, checkpoint)`` from a checkpoint of kind ``"conditioned"`` (config
    ``{"model": ConditionedConfig}`` and the weights), the model in evaluation mode."""
    from ...train.checkpoint import load_checkpoint

    ck = load_checkpoint(path, kind="conditioned", weights_only=True)
    cfg = ck.read(lambda: ConditionedConfig.from_dict(ck.config["model"]))
    return ck.restore(ConditionedGenerator, cfg), ck
