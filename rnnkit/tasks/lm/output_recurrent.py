"""Output-recurrent language model: the only recurrence runs through the output.

Goodfellow, Bengio & Courville (2016), section 10.2.1: no hidden-to-hidden weights; step t
sees its input and the *output of step t-1*::

    a_t = x_t W_xh + y_{t-1} W_yh + b        (B, T, H)    x_t, y_{t-1}: one-hot, so rows
    h_t = phi(a_t)                                         phi = tanh | relu
    o_t = dropout(h_t) W_hq + b_q            (B, T, V)    logits of the next token w_{t+1}

**The choice made for a language model.**  Step t reads the current token, ``x_t = w_t``; its
target is ``w_{t+1}``.  The fed-back ``y_{t-1}`` is a token id too, looked up in a table of its
own, ``W_yh`` (V, H):

* *teacher forcing* (training, and the usual perplexity): ``y_{t-1}`` is the previous step's
  target, which in a language model is the current token ``w_t`` itself.  Nothing then depends
  on an earlier step, so all T steps are one batched computation (no time loop) -- and the model
  is a neural bigram model: ``p(w_{t+1} | w_t)``.
* *free running*: ``y_{t-1}`` is the model's own prediction of ``w_t``, a token drawn from
  ``softmax(o_{t-1})`` (``feedback="sample"``) or its argmax (``"argmax"``).  The true ``w_t``
  still arrives through ``x_t``, so the gap between the teacher-forced and the free-running loss
  measures how much the model leans on the fed-back path it only ever saw filled with the truth
  (exposure bias).
* *scheduled sampling* (Bengio et al. 2015): during training, each step independently, with
  probability ``p`` the fed-back token is the model's own prediction instead of the truth.
  Computed exactly, in order, only where needed (:func:`scheduled_forward`): one parallel
  teacher-forced pass, then for t = 1..T-1 only the rows that feed back a prediction are
  recomputed, from logits that are already final.  As in Bengio et al., no gradient flows
  through the choice of the fed-back token.

Generation: the token just drawn is both the next input and the fed-back output, so a step is
``h = phi(W_xh[w] + W_yh[w] + b)`` and there is no hidden state to carry.

The carried *state* of :meth:`OutputRecurrentLM.loss` is ``(1, B)`` int64: the token to feed
back at the first step of the next window (the prediction made at the last step of this one);
``None`` or -1 means "the truth" (teacher forcing).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from ...checks import check_ids, config_from_dict
from ...errors import ConfigError
from ...nn import init as initializers
from ...nn.layers.dropout import dropout_mask
from ...nn.losses import softmax, softmax_cross_entropy
from ...nn.module import Module

CELL = "output-recurrent"
FEEDBACKS = ("sample", "argmax")


@dataclass
class ORConfig:
    """Everything needed to rebuild an :class:`OutputRecurrentLM` (saved as JSON)."""

    vocab_size: int
    hidden_size: int = 256
    nonlinearity: str = "tanh"  # "tanh" | "relu"
    dropout: float = 0.0  # on h_t, before the output layer
    init_scale: float = 0.1  # W_xh, W_yh ~ U(-a, a); W_hq Xavier; biases 0
    dtype: str = "float32"
    cell: str = CELL  # lets a loader tell this config from an LMConfig

    def __post_init__(self):
        for k in ("vocab_size", "hidden_size"):
            v = getattr(self, k)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"{k} must be a positive integer, got {v!r}")
        if self.nonlinearity not in ("tanh", "relu"):
            raise ConfigError(f"nonlinearity must be 'tanh' or 'relu', got {self.nonlinearity!r}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if not self.init_scale > 0:
            raise ConfigError(f"init_scale must be positive, got {self.init_scale!r}")
        if np.dtype(self.dtype) not in (np.float32, np.float64):
            raise ConfigError(f"dtype must be float32 or float64, got {self.dtype!r}")
        if self.cell != CELL:
            raise ConfigError(f"cell must be {CELL!r}, got {self.cell!r}")

    @property
    def num_layers(self) -> int:
        return 1  # for summaries written for LMConfig ("1x256")

    @classmethod
    def from_dict(cls, d: dict) -> ORConfig:
        return config_from_dict(cls, d, "output-recurrent")

    def to_dict(self) -> dict:
        return asdict(self)


# -- the math: pure functions of the parameters ---------------------------------------------------
def hidden(p: dict, x: np.ndarray, y: np.ndarray, relu: bool) -> np.ndarray:
    """``phi(W_xh[x] + W_yh[y] + b)`` for id arrays ``x``, ``y`` of any equal shape (..., H)."""
    a = p["W_xh"][x] + p["W_yh"][y]  # a new array even when x, y are scalars (views)
    a += p["b"]
    return np.maximum(a, 0, out=a) if relu else np.tanh(a, out=a)


def forward(p: dict, x: np.ndarray, y: np.ndarray, relu: bool, mask=None):
    """Teacher-forced (or any fixed-feedback) pass: ``x``, ``y`` (B, T) -> logits (B, T, V).

    ``mask`` (B, T, H) is the dropout mask already scaled by ``1 / (1 - p)``, or ``None``.
    """
    h = hidden(p, x, y, relu)  # (B, T, H)
    logits = _output(p, h, mask)
    return logits, {"x": x, "y": y, "h": h, "mask": mask, "relu": relu}


def _output(p: dict, h: np.ndarray, mask) -> np.ndarray:
    hd = h if mask is None else h * mask
    H = hd.shape[-1]
    logits = hd.reshape(-1, H) @ p["W_hq"]  # (N, V): one 2-D multiply
    logits += p["b_q"]
    return logits.reshape(*h.shape[:-1], -1)


def backward(p: dict, dlogits: np.ndarray, cache: dict) -> dict:
    """Gradients of every parameter from ``dlogits`` (B, T, V).  No step depends on another
    through the weights, so there is no backward loop; the chain rule gives::

        dW_hq = hd^T do,  db_q = sum do,  dh = do W_hq^T * mask,  da = dh * phi'(a)
        dW_xh[v] = sum of da where x == v,  dW_yh[v] = sum of da where y == v,  db = sum da
    """
    h, mask = cache["h"], cache["mask"]
    H = h.shape[-1]
    V = dlogits.shape[-1]
    h2 = h.reshape(-1, H)
    d2 = dlogits.reshape(-1, V)
    hd = h2 if mask is None else h2 * mask.reshape(-1, H)
    g = {"W_hq": hd.T @ d2, "b_q": d2.sum(axis=0)}
    da = d2 @ p["W_hq"].T  # (N, H)
    if mask is not None:
        da *= mask.reshape(-1, H)
    da *= (h2 > 0) if cache["relu"] else 1.0 - h2 * h2  # phi' from the stored output
    g["b"] = da.sum(axis=0)
    g["W_xh"] = _rows_sum(p["W_xh"].shape, cache["x"].reshape(-1), da)
    g["W_yh"] = _rows_sum(p["W_yh"].shape, cache["y"].reshape(-1), da)
    return g


def _rows_sum(shape, ids: np.ndarray, d: np.ndarray) -> np.ndarray:
    """``out[v] = sum of d[n] over n with ids[n] == v``: one sort and one ``reduceat``."""
    out = np.zeros(shape, d.dtype)
    order = np.argsort(ids, kind="stable")
    s = ids[order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    out[s[starts]] = np.add.reduceat(d[order], starts, axis=0)
    return out


def scheduled_forward(p: dict, x: np.ndarray, replace: np.ndarray, choose: Callable,
                      relu: bool, y0: np.ndarray | None = None, mask=None):
    """Forward pass in which step t feeds back the model's own prediction where ``replace``.

    ``x`` (B, T) token ids; ``replace`` (B, T) bool; ``choose(logits (R, V)) -> ids (R,)`` turns
    the previous step's logits into the fed-back token; ``y0`` (B,) the prediction to feed back
    at step 0 (from the previous window; ``None``: step 0 always feeds back the truth).  Returns
    ``(logits (B, T, V), y (B, T) the tokens fed back, cache)``; the cache is that of
    :func:`forward` with this ``y``, so :func:`backward` applies unchanged.

    Equivalent to the plain loop, where step t reads only logits that are already final::

        for t in range(T):
            y[:, t] = where(replace[:, t], choose(logits[:, t - 1]), x[:, t])
            logits[:, t] = output(hidden(x[:, t], y[:, t]))
    """
    y = x.copy()
    if y0 is not None:
        y[:, 0] = np.where(replace[:, 0], y0, x[:, 0])
    h = hidden(p, x, y, relu)  # (B, T, H): teacher-forced except at step 0
    logits = _output(p, h, mask)
    for t in range(1, x.shape[1]):
        rows = np.flatnonzero(replace[:, t])
        if rows.size == 0:
            continue
        y[rows, t] = choose(logits[rows, t - 1])
        h[rows, t] = hidden(p, x[rows, t], y[rows, t], relu)
        logits[rows, t] = _output(p, h[rows, t], None if mask is None else mask[rows, t])
    return logits, y, {"x": x, "y": y, "h": h, "mask": mask, "relu": relu}


def make_chooser(feedback: str, rng: np.random.Generator | None) -> Callable:
    """``choose(logits (R, V)) -> (R,)``: a draw from the softmax ("sample") or the argmax."""
    if feedback == "argmax":
        return lambda z: np.argmax(z, axis=-1)
    if feedback != "sample":
        raise ConfigError(f"feedback must be one of {', '.join(FEEDBACKS)}, got {feedback!r}")
    if rng is None:
        raise ValueError("feedback='sample' needs a numpy.random.Generator (rng=...)")

    def draw(z):
        c = np.cumsum(softmax(z.astype(np.float64)), axis=-1)  # (R, V)
        u = rng.random(z.shape[0]) * c[:, -1]
        return np.minimum((c < u[:, None]).sum(axis=-1), z.shape[-1] - 1)

    return draw


# -- the model ------------------------------------------------------------------------------------
class OutputRecurrentLM(Module):
    """Output-recurrent language model with the interface of
    :class:`~rnnkit.tasks.lm.model.LanguageModel` (``forward``/``backward``/``loss``/``step``).

    >>> lm = OutputRecurrentLM(ORConfig(vocab_size=20, hidden_size=8), rng=0)
    >>> logits, state, cache = lm.forward(np.zeros((2, 5), dtype=np.int64))
    >>> logits.shape
    (2, 5, 20)
    """

    kind = "lm"

    def __init__(self, cfg: ORConfig, rng=None):
        super().__init__()
        self.cfg = cfg
        rng = initializers.as_rng(rng)
        V, H, dt, a = cfg.vocab_size, cfg.hidden_size, np.dtype(cfg.dtype), cfg.init_scale
        self.add_param("W_xh", initializers.uniform(rng, (V, H), a, dt))
        self.add_param("W_yh", initializers.uniform(rng, (V, H), a, dt))
        self.add_param("b", np.zeros(H, dt))
        self.add_param("W_hq", initializers.xavier_uniform(rng, H, V, dt))
        self.add_param("b_q", np.zeros(V, dt))

    @classmethod
    def from_config(cls, d: dict | ORConfig, rng=None) -> OutputRecurrentLM:
        return cls(d if isinstance(d, ORConfig) else ORConfig.from_dict(d), rng=rng)

    @property
    def relu(self) -> bool:
        return self.cfg.nonlinearity == "relu"

    def initial_state(self, B: int) -> np.ndarray:
        """``(1, B)`` of -1: nothing predicted yet, feed back the truth."""
        return np.full((1, B), -1, np.int64)

    def _check(self, ids, name="ids") -> np.ndarray:
        ids = np.asarray(ids)
        if ids.ndim != 2:
            raise ValueError(f"OutputRecurrentLM: expected {name} of shape (B, T), got "
                             f"{ids.shape}")
        return check_ids("OutputRecurrentLM", name, ids, self.cfg.vocab_size)

    def _mask(self, shape, rng) -> np.ndarray | None:
        q = self.cfg.dropout
        if not self.training or q == 0.0:
            return None
        rng = rng if rng is not None else np.random.default_rng()
        return dropout_mask(shape, q, rng, self.dtype)

    # -- forward / backward -------------------------------------------------------------------
    def forward(self, ids, state=None, *, rng: np.random.Generator | None = None,
                ss_prob: float = 0.0, feedback: str = "sample"):
        """``ids`` (B, T) -> ``(logits (B, T, V), state, cache)``.

        ``ss_prob`` 0: teacher forcing (``state`` is ignored, ``None`` is returned).  Otherwise
        each step feeds back the model's own prediction with probability ``ss_prob`` (1: free
        running), chosen by ``feedback`` with ``rng``; ``state`` (1, B) is the prediction for
        step 0 and the returned state the prediction for the next window's first token.
        """
        x = self._check(ids)
        B, T = x.shape
        p = self.param
        if not 0.0 <= ss_prob <= 1.0:
            raise ValueError(f"OutputRecurrentLM: ss_prob must be in [0, 1], got {ss_prob}")
        mask = self._mask((B, T, self.cfg.hidden_size), rng)
        if ss_prob == 0.0:
            logits, cache = forward(p, x, x, self.relu, mask)
            return logits, None, cache
        rng = rng if rng is not None else np.random.default_rng()
        choose = make_chooser(feedback, rng)
        replace = rng.random((B, T)) < ss_prob  # drawn first: the same draws for any feedback
        y0 = None
        if state is not None:
            s = np.asarray(state).reshape(-1)
            if s.shape != (B,):
                raise ValueError(f"OutputRecurrentLM: expected state of shape (1, {B}), got "
                                 f"{np.shape(state)}")
            if (s >= 0).any():
                y0 = np.where(s >= 0, s, x[:, 0])
        logits, _, cache = scheduled_forward(p, x, replace, choose, self.relu, y0, mask)
        return logits, choose(logits[:, -1])[None, :], cache

    def backward(self, dlogits, cache) -> None:
        """Accumulate parameter gradients from ``dlogits`` (B, T, V)."""
        for k, g in backward(self.param, dlogits, cache).items():
            self.grad[k] += g

    def loss(self, ids, targets, state=None, *, mask=None, rng=None, backward: bool = True,
             ss_prob: float = 0.0, feedback: str = "sample"):
        """Mean cross-entropy of ``targets`` (B, T); ``(loss, n_tokens, state)`` as in
        :meth:`LanguageModel.loss`, with the feedback options of :meth:`forward`."""
        logits, state, cache = self.forward(ids, state, rng=rng, ss_prob=ss_prob,
                                            feedback=feedback)
        loss, dlogits, n = softmax_cross_entropy(logits, np.asarray(targets), mask)
        if backward:
            self.backward(dlogits, cache)
        return loss, n, state

    # -- generation -----------------------------------------------------------------------------
    def step(self, token_ids, state):
        """Next-token logits for ``token_ids`` (B,): the token is also the fed-back output."""
        w = np.asarray(token_ids)
        h = hidden(self.param, w, w, self.relu)
        return _output(self.param, h, None), state

