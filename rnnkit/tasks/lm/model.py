"""Recurrent language model: embedding -> dropout -> RNN/GRU/LSTM stack -> dropout -> linear.

``logits_t = dropout(h_t) W_o + b_o`` and ``p(w_{t+1} | w_<=t) = softmax(logits_t)``.  With
``tie_weights`` the output matrix is the embedding matrix transposed (Press & Wolf 2017;
needs ``embed_size`` equal to the stack's output width, ``hidden_size`` or ``proj_size``), so
its gradient is the sum of both uses.  ``proj_size > 0`` makes the stack a projection LSTM
(:mod:`rnnkit.nn.lstmp`); cells ``mingru`` and ``minlstm`` are the parallel-scan cells of
:mod:`rnnkit.nn.minrnn`; ``layer_norm`` the LayerNorm LSTM/GRU of
:mod:`rnnkit.nn.layernorm_rnn`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ...checks import check_ids, config_from_dict
from ...errors import ConfigError
from ...nn import init as initializers
from ...nn.adaptive_softmax import AdaptiveSoftmax, check_cutoffs
from ...nn.factory import CELLS, make_layer
from ...nn.layers import Embedding, Linear
from ...nn.layers.dropout import dropout, dropout_backward
from ...nn.losses import softmax_cross_entropy
from ...nn.module import Module


@dataclass
class LMConfig:
    """Everything needed to rebuild a :class:`LanguageModel` (saved as JSON in checkpoints)."""

    vocab_size: int
    cell: str = "lstm"
    embed_size: int = 128
    hidden_size: int = 256
    num_layers: int = 2
    dropout: float = 0.0
    tie_weights: bool = False
    init: str = "default"  # "default" (Xavier / orthogonal) | "uniform" (+-init_scale)
    #                        | "identity" (RNN: W_h = init_scale * I, Le et al. 2015)
    init_scale: float = 0.1
    nonlinearity: str = "tanh"
    dtype: str = "float32"
    proj_size: int = 0  # LSTM only: LSTMP output width (0: none)
    layer_norm: bool = False  # LSTM/GRU: LayerNorm cells (rnnkit.nn.layernorm_rnn)
    adaptive_softmax: list[int] | None = None  # cutoffs of an adaptive softmax output layer

    @property
    def output_size(self) -> int:
        """Width of the recurrent stack's output: ``proj_size`` if set, else ``hidden_size``."""
        return self.proj_size or self.hidden_size

    def __post_init__(self):
        if self.cell not in CELLS:
            raise ConfigError(f"cell must be one of {', '.join(CELLS)}, got {self.cell!r}")
        for k in ("vocab_size", "embed_size", "hidden_size", "num_layers"):
            v = getattr(self, k)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"{k} must be a positive integer, got {v!r}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if self.init not in ("default", "uniform", "identity"):
            raise ConfigError(f"init must be default, uniform or identity, got {self.init!r}")
        if self.init == "identity" and self.cell != "rnn":
            raise ConfigError("init 'identity' is for the vanilla RNN (--cell rnn) only")
        if not isinstance(self.proj_size, int) or isinstance(self.proj_size, bool) or \
                self.proj_size < 0:
            raise ConfigError(f"proj_size must be a non-negative integer, got {self.proj_size!r}")
        if self.proj_size and (self.cell != "lstm" or self.proj_size >= self.hidden_size):
            raise ConfigError(f"proj_size is for the LSTM, below hidden_size "
                              f"({self.hidden_size}); got {self.proj_size} with cell {self.cell!r}")
        if self.layer_norm and (self.cell not in ("lstm", "gru") or self.proj_size):
            raise ConfigError(f"layer_norm is for the LSTM and GRU without proj_size, got cell "
                              f"{self.cell!r}")
        if self.adaptive_softmax is not None:
            self.adaptive_softmax = check_cutoffs(self.adaptive_softmax, self.vocab_size)
            if self.tie_weights:
                raise ConfigError("tie_weights and adaptive_softmax exclude each other (the "
                                  "adaptive softmax has no V x D output matrix to share)")
        if self.tie_weights and self.embed_size != self.output_size:
            what = "proj_size" if self.proj_size else "hidden_size"
            raise ConfigError(
                f"tie_weights needs embed_size == {what}, got {self.embed_size} and "
                f"{self.output_size}")

    @classmethod
    def from_dict(cls, d: dict) -> LMConfig:
        return config_from_dict(cls, d, "language-model")

    def to_dict(self) -> dict:
        return asdict(self)


class LanguageModel(Module):
    """Word- or character-level RNN language model.

    >>> lm = LanguageModel(LMConfig(vocab_size=20, embed_size=8, hidden_size=8), rng=0)
    >>> logits, state, cache = lm.forward(np.zeros((2, 5), dtype=np.int64))
    >>> logits.shape
    (2, 5, 20)
    """

    kind = "lm"

    def __init__(self, cfg: LMConfig, rng=None):
        super().__init__()
        self.cfg = cfg
        # Memory lent from one loss() call to the next (see Recurrent.forward's ``scratch``):
        # never state, only arrays of a finished call that no one else holds.
        self._scratch: dict = {}
        rng = initializers.as_rng(rng)
        uni = cfg.init == "uniform"
        emb_init = "uniform" if uni else "normal"
        self.embed = self.add_module("embed", Embedding(
            cfg.vocab_size, cfg.embed_size, init=emb_init, init_scale=cfg.init_scale,
            dtype=cfg.dtype, rng=rng))
        opts = {"nonlinearity": cfg.nonlinearity} if cfg.cell == "rnn" else {}
        if cfg.proj_size:
            opts["proj_size"] = cfg.proj_size
        if cfg.layer_norm:
            opts["layer_norm"] = True
        self.rnn = self.add_module("rnn", make_layer(
            cfg.cell, cfg.embed_size, cfg.hidden_size, cfg.num_layers, dropout=cfg.dropout,
            init=cfg.init, init_scale=cfg.init_scale, dtype=cfg.dtype, rng=rng, **opts))
        self.out = self.asm = None
        if cfg.adaptive_softmax is not None:
            self.asm = self.add_module("asm", AdaptiveSoftmax(
                cfg.output_size, cfg.vocab_size, cfg.adaptive_softmax,
                init="uniform" if uni else "xavier", init_scale=cfg.init_scale, dtype=cfg.dtype,
                rng=rng))
        elif cfg.tie_weights:
            self.add_param("b_out", np.zeros(cfg.vocab_size, cfg.dtype))
        else:
            self.out = self.add_module("out", Linear(
                cfg.output_size, cfg.vocab_size, init="uniform" if uni else "xavier",
                init_scale=cfg.init_scale, dtype=cfg.dtype, rng=rng))

    def initial_state(self, B: int):
        return self.rnn.initial_state(B)

    # -- forward / backward -----------------------------------------------------------
    def forward(self, ids, state=None, *, rng: np.random.Generator | None = None,
                grad: bool = True, scratch: dict | None = None, head: bool = True):
        """``ids`` (B, T) -> ``(logits (B, T, V), final state, cache)``; ``grad=False``: no
        backward will follow, so the recurrent stack keeps no history (the cache cannot be
        used for :meth:`backward`).  ``scratch``: see :meth:`Recurrent.forward`.  With an
        adaptive softmax the logits are its exact log-probabilities; ``head=False`` returns
        the features (B, T, H) before the output layer instead (for :meth:`loss`)."""
        ids = np.asarray(ids)
        if ids.ndim != 2:
            raise ValueError(f"LanguageModel: expected ids of shape (B, T), got {ids.shape}")
        ids = check_ids("LanguageModel", "ids", ids, self.cfg.vocab_size)
        if rng is None and self.training and self.cfg.dropout > 0:
            rng = np.random.default_rng()  # pass one for reproducible dropout
        emb, emb_cache = self.embed.forward(ids)
        p, training = self.cfg.dropout, self.training
        x, m_in = dropout(emb, p, rng, training=training)
        h, state, rnn_cache = self.rnn.forward(x, state, rng=rng, grad=grad, scratch=scratch)
        h, m_out = dropout(h, p, rng, training=training)
        if not head:
            return h, state, (emb_cache, m_in, rnn_cache, m_out, None)
        if self.asm is not None:
            B, T, H = h.shape
            logits, out_cache = self.asm.log_prob(h.reshape(B * T, H))
            logits = logits.reshape(B, T, -1)
        elif self.out is None:
            B, T, H = h.shape
            logits = h.reshape(B * T, H) @ self.embed.param["W"].T  # (B*T, V)
            logits += self.param["b_out"]
            logits = logits.reshape(B, T, -1)
            out_cache = h
        else:
            logits, out_cache = self.out.forward(h)
        return logits, state, (emb_cache, m_in, rnn_cache, m_out, out_cache)

    def backward(self, dlogits, cache, *, consume_cache: bool = False) -> None:
        """Accumulate parameter gradients from ``dlogits`` (B, T, V).  ``consume_cache``: the
        layers may work inside the cache's arrays (it must not be used again)."""
        out_cache = cache[-1]
        if self.asm is not None:
            V = self.cfg.vocab_size
            dh = self.asm.backward_log_prob(dlogits.reshape(-1, V), out_cache)
            dh = dh.reshape(*dlogits.shape[:-1], -1)
        elif self.out is None:
            h = out_cache
            V, H = self.cfg.vocab_size, self.cfg.output_size
            d2 = dlogits.reshape(-1, V)
            self.embed.grad["W"] += d2.T @ h.reshape(-1, H)
            self.grad["b_out"] += d2.sum(axis=0)
            dh = (d2 @ self.embed.param["W"]).reshape(*dlogits.shape[:-1], H)
        else:
            dh = self.out.backward(dlogits, out_cache)
        self._backward_features(dh, cache, consume_cache)

    def _backward_features(self, dh, cache, consume_cache: bool = False) -> None:
        """From ``dh`` (B, T, H), the gradient of the output layer's input, down to the
        embedding."""
        emb_cache, m_in, rnn_cache, m_out, _ = cache
        if m_out is not None:
            dh *= m_out  # dropout_backward, in place: dh is ours
        dx, _ = self.rnn.backward(dh, rnn_cache, consume_cache=consume_cache)
        self.embed.backward(dropout_backward(dx, m_in), emb_cache)

    def loss(self, ids, targets, state=None, *, mask=None, rng=None, backward: bool = True):
        """Mean cross-entropy of predicting ``targets`` (B, T) from ``ids`` (B, T).

        Returns ``(mean_loss, n_tokens, final_state)``; with ``backward`` the gradients of the
        mean loss are accumulated into :meth:`grads`.
        """
        # the cache never leaves this call, so the next call may reuse its memory
        if self.asm is not None:  # the adaptive softmax scores the targets only
            h, state, cache = self.forward(ids, state, rng=rng, grad=backward,
                                           scratch=self._scratch, head=False)
            B, T, H = h.shape
            loss, dh, n = self.asm.nll(h.reshape(B * T, H), np.asarray(targets).reshape(-1),
                                       None if mask is None else np.reshape(mask, -1),
                                       grad=backward)
            if backward:
                self._backward_features(dh.reshape(B, T, H), cache, consume_cache=True)
            return loss, n, state
        logits, state, cache = self.forward(ids, state, rng=rng, grad=backward,
                                            scratch=self._scratch)
        # the logits are a fresh array no one else sees: the loss turns them into dlogits
        loss, dlogits, n = softmax_cross_entropy(logits, np.asarray(targets), mask,
                                                 grad=backward, overwrite=True)
        if backward:
            self.backward(dlogits, cache, consume_cache=True)  # the cache is used once
        return loss, n, state

    # -- generation ---------------------------------------------------------------------
    def step(self, token_ids, state):
        """Next-token logits for ``token_ids`` (B,) given ``state``: O(1) per token."""
        x = self.embed.param["W"][np.asarray(token_ids)]
        h, state = self.rnn.step(x, state)
        if self.asm is not None:  # exact log-probabilities over the whole vocabulary
            logits = self.asm.log_prob(h)[0]
        elif self.out is None:
            logits = h @ self.embed.param["W"].T + self.param["b_out"]
        else:
            logits = h @ self.out.param["W"] + self.out.param["b"]
        return logits, state

