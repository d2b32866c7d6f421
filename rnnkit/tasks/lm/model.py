"""Recurrent language model: embedding -> dropout -> RNN/GRU/LSTM stack -> dropout -> linear.

``logits_t = dropout(h_t) W_o + b_o`` and ``p(w_{t+1} | w_<=t) = softmax(logits_t)``.  With
``tie_weights`` the output matrix is the embedding matrix transposed (Press & Wolf 2017;
needs ``embed_size`` equal to the stack's output width, ``hidden_size`` or ``proj_size``), so
its gradient is the sum of both uses.  ``proj_size > 0`` makes the stack a projection LSTM
(:mod:`rnnkit.nn.lstmp`); cells ``mingru`` and ``minlstm`` are the parallel-scan cells of
:mod:`rnnkit.nn.minrnn`; ``layer_norm`` the LayerNorm LSTM/GRU of
:mod:`rnnkit.nn.layernorm_rnn`.

The AWD-LSTM regularisers (Merity, Keskar & Socher 2018), all off by default and in ``eval()``:
``dropout_embed`` drops whole words (rows of the embedding matrix, one draw per batch);
``dropout_input`` / ``dropout`` / ``dropout_output`` act on the embedding output, between
layers and on the last layer's output (the first and last default to ``dropout``); ``locked``
draws each of those masks once per window and reuses it at every step; ``weight_drop`` is
DropConnect on every ``W_h``; ``ar`` and ``tar`` add ``ar * mean(dropout(h)^2)`` and
``tar * mean((h_{t+1} - h_t)^2)`` of the last layer's output ``h`` to the training objective
(:mod:`rnnkit.nn.penalties`).
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
from ...nn.penalties import activation_penalty, temporal_penalty
from ...nn.recurrent import lend


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
    dropout_input: float | None = None  # on the embedding output; None: ``dropout``
    dropout_output: float | None = None  # on the last layer's output; None: ``dropout``
    dropout_embed: float = 0.0  # whole words: rows of the embedding matrix, per batch
    weight_drop: float = 0.0  # DropConnect on every W_h, one mask per batch
    locked: bool = False  # every dropout mask drawn once per window, reused at every step
    ar: float = 0.0  # activation regularisation of the last layer's (dropped) output
    tar: float = 0.0  # temporal activation regularisation of the last layer's output

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
        self._check_regularisers()
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

    def _check_regularisers(self) -> None:
        for k in ("dropout", "dropout_input", "dropout_output", "dropout_embed", "weight_drop"):
            v = getattr(self, k)
            if v is not None and not 0 <= v < 1:
                raise ConfigError(f"{k} must be in [0, 1), got {v!r}")
        for k in ("ar", "tar"):
            if not getattr(self, k) >= 0:
                raise ConfigError(f"{k} must be >= 0, got {getattr(self, k)!r}")

    @classmethod
    def from_dict(cls, d: dict) -> LMConfig:
        return config_from_dict(cls, d, "language-model")

    @property
    def p_input(self) -> float:
        return self.dropout if self.dropout_input is None else self.dropout_input

    @property
    def p_output(self) -> float:
        return self.dropout if self.dropout_output is None else self.dropout_output

    def random(self) -> bool:
        """Whether training draws random masks (and so needs a Generator)."""
        return any((self.dropout, self.p_input, self.p_output, self.dropout_embed,
                    self.weight_drop))

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
            weight_drop=cfg.weight_drop, locked=cfg.locked, init=cfg.init,
            init_scale=cfg.init_scale, dtype=cfg.dtype, rng=rng, **opts))
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
        cfg = self.cfg
        if rng is None and self.training and cfg.random():
            rng = np.random.default_rng()  # pass one for reproducible dropout
        emb, emb_cache = self.embed.forward(ids, cfg.dropout_embed, rng)
        training, locked = self.training, cfg.locked
        x, m_in = dropout(emb, cfg.p_input, rng, training=training, locked=locked)
        h, state, rnn_cache = self.rnn.forward(x, state, rng=rng, grad=grad, scratch=scratch)
        h_raw = h if cfg.tar and training else None  # what TAR sees: before dropout
        h, m_out = dropout(h, cfg.p_output, rng, training=training, locked=locked)
        if not head:
            return h, state, (emb_cache, m_in, rnn_cache, m_out, h, h_raw, None)
        if self.asm is not None:
            B, T, H = h.shape
            logits, out_cache = self.asm.log_prob(h.reshape(B * T, H))
            logits = logits.reshape(B, T, -1)
        else:
            # with scratch (loss()), the logits of the previous call are written over: a
            # fresh (B*T, V) array costs a page fault per 4 KiB at every step
            B, T, H = h.shape
            W = self.embed.param["W"].T if self.out is None else self.out.param["W"]
            buf = None if scratch is None else lend(scratch, "logits", (B * T, W.shape[1]),
                                                     np.result_type(h, W))
            if self.out is None:
                logits = np.matmul(h.reshape(B * T, H), W, out=buf)  # (B*T, V)
                logits += self.param["b_out"]
                logits = logits.reshape(B, T, -1)
                out_cache = h
            else:
                logits, out_cache = self.out.forward(h, out=buf)
        return logits, state, (emb_cache, m_in, rnn_cache, m_out, h, h_raw, out_cache)

    def penalty(self, cache) -> tuple[float, np.ndarray | None, np.ndarray | None]:
        """``(AR + TAR, d/d dropped h, d/d h)`` of a training forward's cache (0 and ``None``
        when both are off or in evaluation)."""
        cfg = self.cfg
        h_drop, h_raw = cache[4], cache[5]
        value, d_drop, d_raw = 0.0, None, None
        if cfg.ar and self.training:
            value, d_drop = activation_penalty(h_drop, cfg.ar)
        if h_raw is not None:
            v, d_raw = temporal_penalty(h_raw, cfg.tar)
            value += v
        return value, d_drop, d_raw

    def backward(self, dlogits, cache, *, consume_cache: bool = False, penalty=None) -> None:
        """Accumulate parameter gradients from ``dlogits`` (B, T, V).  ``consume_cache``: the
        layers may work inside the cache's arrays (it must not be used again).  ``penalty``:
        :meth:`penalty`'s result, whose gradients are added to the last layer's output."""
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
        self._backward_features(dh, cache, consume_cache, penalty)

    def _backward_features(self, dh, cache, consume_cache: bool = False, penalty=None) -> None:
        """From ``dh`` (B, T, H), the gradient of the output layer's input, down to the
        embedding (with the gradients of ``penalty``, AR's before the output dropout and
        TAR's after it)."""
        emb_cache, m_in, rnn_cache, m_out = cache[:4]
        d_drop, d_raw = (None, None) if penalty is None else penalty[1:]
        if d_drop is not None:
            dh += d_drop
        if m_out is not None:
            dh *= m_out  # dropout_backward, in place: dh is ours
        if d_raw is not None:
            dh += d_raw
        dx, _ = self.rnn.backward(dh, rnn_cache, consume_cache=consume_cache)
        self.embed.backward(dropout_backward(dx, m_in), emb_cache)

    def loss(self, ids, targets, state=None, *, mask=None, rng=None, backward: bool = True,
             objective: bool = False):
        """Mean cross-entropy of predicting ``targets`` (B, T) from ``ids`` (B, T).

        Returns ``(mean_loss, n_tokens, final_state)``; with ``backward`` the gradients of the
        training objective -- the mean loss plus AR and TAR in training -- are accumulated into
        :meth:`grads`.  ``objective=True`` returns that objective instead of the mean loss.
        """
        penalized = self.training and (self.cfg.ar or self.cfg.tar)
        # the cache never leaves this call, so the next call may reuse its memory
        if self.asm is not None:  # the adaptive softmax scores the targets only
            h, state, cache = self.forward(ids, state, rng=rng, grad=backward,
                                           scratch=self._scratch, head=False)
            B, T, H = h.shape
            loss, dh, n = self.asm.nll(h.reshape(B * T, H), np.asarray(targets).reshape(-1),
                                       None if mask is None else np.reshape(mask, -1),
                                       grad=backward)
            pen = self.penalty(cache) if penalized else None
            if backward:
                self._backward_features(dh.reshape(B, T, H), cache, True, pen)
            return (loss + pen[0] if objective and pen else loss), n, state
        logits, state, cache = self.forward(ids, state, rng=rng, grad=backward,
                                            scratch=self._scratch)
        # the logits are a fresh array no one else sees: the loss turns them into dlogits
        loss, dlogits, n = softmax_cross_entropy(logits, np.asarray(targets), mask,
                                                 grad=backward, overwrite=True)
        pen = self.penalty(cache) if penalized else None
        if backward:
            self.backward(dlogits, cache, consume_cache=True, penalty=pen)  # cache used once
        return (loss + pen[0] if objective and pen else loss), n, state

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

