"""Adaptive softmax (Grave, Joulin, Cissé, Grangier & Jégou 2017) with exact log-probabilities.

The vocabulary, sorted by frequency, is cut at ``cutoffs = [c_1, ..., c_n]``: the head holds the
shortlist ``0 .. c_1 - 1`` plus one entry per tail cluster ``[c_i, c_{i+1})`` (``c_{n+1} = V``);
cluster ``i`` reads ``x`` through a projection to ``D // 4**(i+1)`` features
(``div_value = 4``, as ``torch.nn.AdaptiveLogSoftmaxWithLoss``)::

    head    = log_softmax(x W_head + b_head)                     (N, c_1 + n)
    log p(w) = head[w]                                           w in the shortlist
    log p(w) = head[c_1 + i] + log_softmax((x P_i) O_i)[w - c_i] w in cluster i

so the probabilities over the whole vocabulary sum to 1.  Training (:meth:`nll`) evaluates each
tail only on the rows whose target falls in it, which is where the saving comes from;
:meth:`log_prob` gives the full (N, V) distribution for evaluation and sampling.

Parameters: ``head.W`` (D, c_1 + n), ``head.b``; ``tail.{i}.proj.W`` (D, h_i) and
``tail.{i}.out.W`` (h_i, c_{i+1} - c_i), no tail biases (as in PyTorch, whose ``head_bias=True``
module takes the same weights, transposed).  Backward: docs/derivations.md#adaptive-softmax.

>>> asm = AdaptiveSoftmax(16, 100, [10, 40], rng=0)
>>> x = np.random.default_rng(0).standard_normal((3, 16))
>>> lp, _ = asm.log_prob(x)
>>> lp.shape, np.allclose(np.exp(lp).sum(axis=1), 1)
((3, 100), True)
"""

from __future__ import annotations

import numpy as np

from ..checks import check_array, check_ids
from ..errors import ConfigError
from . import init as initializers
from .layers import Linear
from .losses import log_softmax, softmax, softmax_cross_entropy
from .module import Module


def check_cutoffs(cutoffs, vocab_size: int) -> list[int]:
    """``cutoffs`` as a list of increasing integers in ``1 .. vocab_size - 1``."""
    try:
        cut = [int(c) for c in cutoffs]
    except (TypeError, ValueError):
        raise ConfigError(f"adaptive softmax cutoffs must be integers, got {cutoffs!r}") from None
    if not cut or any(b <= a for a, b in zip(cut, cut[1:])) or cut[0] < 1 or \
            cut[-1] >= vocab_size or any(c != float(x) for c, x in zip(cut, cutoffs)):
        raise ConfigError(f"adaptive softmax cutoffs must increase within 1..{vocab_size - 1} "
                          f"(the vocabulary has {vocab_size} tokens), got {list(cutoffs)!r}")
    return cut


class AdaptiveSoftmax(Module):
    """Adaptive softmax output layer over ``vocab_size`` tokens for inputs of ``in_features``."""

    def __init__(self, in_features: int, vocab_size: int, cutoffs, *, div_value: float = 4.0,
                 init: str = "xavier", init_scale: float = 0.1, dtype="float32", rng=None):
        super().__init__()
        rng = initializers.as_rng(rng)
        self.cutoffs = check_cutoffs(cutoffs, vocab_size)
        self.in_features, self.vocab_size = in_features, vocab_size
        self.bounds = [*self.cutoffs, vocab_size]  # c_1 .. c_n, V
        S, n = self.cutoffs[0], len(self.cutoffs)
        kw = {"init": init, "init_scale": init_scale, "dtype": dtype, "rng": rng}
        self.head = self.add_module("head", Linear(in_features, S + n, **kw))
        self.tails = []
        for i in range(n):
            h = max(1, int(in_features // (div_value ** (i + 1))))
            size = self.bounds[i + 1] - self.bounds[i]
            proj = self.add_module(f"tail.{i}.proj", Linear(in_features, h, bias=False, **kw))
            out = self.add_module(f"tail.{i}.out", Linear(h, size, bias=False, **kw))
            self.tails.append((proj, out))

    def _check(self, x):
        return check_array("AdaptiveSoftmax", "x", x, ("N", self.in_features))

    def cluster_of(self, y: np.ndarray) -> np.ndarray:
        """``-1`` for shortlist tokens, else the index of the tail cluster of each id."""
        return np.searchsorted(np.asarray(self.cutoffs), y, side="right") - 1

    # -- training: the loss over the targets only ---------------------------------------------
    def nll(self, x, targets, mask=None, *, grad: bool = True):
        """Mean negative log-likelihood of ``targets`` (N,) given ``x`` (N, D), over the rows
        where ``mask`` (N,) is true.  Returns ``(loss, dx, n)``; with ``grad`` the parameter
        gradients of the mean are accumulated and ``dx`` (N, D) returned, else ``dx`` is
        ``None``."""
        x = self._check(x)
        N = x.shape[0]
        y = check_ids("AdaptiveSoftmax", "targets", np.asarray(targets).reshape(-1),
                      self.vocab_size)
        if y.shape[0] != N:
            raise ValueError(f"AdaptiveSoftmax: expected targets of shape ({N},), got "
                             f"{np.shape(targets)}")
        w = np.ones(N, x.dtype) if mask is None else np.asarray(mask, x.dtype).reshape(-1)
        n = float(w.sum())
        scale = 1.0 / max(n, 1.0)
        S = self.cutoffs[0]
        cl = self.cluster_of(y)
        head_y = np.where(cl < 0, y, S + cl)
        z, _ = self.head.forward(x)  # (N, S + n)
        total, dz, _ = softmax_cross_entropy(z, head_y, w, "sum", grad=grad, overwrite=True)
        dx = None
        if grad:
            dz *= scale
            dx = self.head.backward(dz, x)
        for i, (proj, out) in enumerate(self.tails):
            rows = np.flatnonzero((cl == i) & (w > 0))
            if rows.size == 0:
                continue
            xi = x[rows]  # (Ni, D)
            hi, _ = proj.forward(xi)  # (Ni, h_i)
            ti, _ = out.forward(hi)  # (Ni, n_i)
            part, dti, _ = softmax_cross_entropy(ti, y[rows] - self.bounds[i], w[rows], "sum",
                                                 grad=grad, overwrite=True)
            total += part
            if grad:
                dti *= scale
                dx[rows] += proj.backward(out.backward(dti, hi), xi)
        return total * scale, dx, int(n)

    # -- evaluation and sampling: the whole distribution --------------------------------------
    def log_prob(self, x):
        """``(log_p (N, V), cache)``: exact log-probabilities of every token."""
        x = self._check(x)
        N = x.shape[0]
        S = self.cutoffs[0]
        z, _ = self.head.forward(x)
        head = log_softmax(z)  # (N, S + n)
        out = np.empty((N, self.vocab_size), head.dtype)  # (N, V)
        out[:, :S] = head[:, :S]
        hs, tails = [], []
        for i, (proj, lin) in enumerate(self.tails):
            hi, _ = proj.forward(x)
            lo, hi_end = self.bounds[i], self.bounds[i + 1]
            ti = log_softmax(lin.forward(hi)[0])  # (N, n_i)
            out[:, lo:hi_end] = ti + head[:, S + i : S + i + 1]
            hs.append(hi)
            tails.append(ti)
        return out, (x, head, hs, tails)

    def backward_log_prob(self, dlp, cache):
        """Accumulate parameter gradients from ``dlp`` (N, V), the gradient of
        :meth:`log_prob`'s output; returns ``dx`` (N, D).  Through ``y = log_softmax(z)``:
        ``dz = dy - softmax(z) * sum(dy)``."""
        x, head, hs, tails = cache
        S = self.cutoffs[0]
        dhead = np.empty_like(head)  # (N, S + n)
        dhead[:, :S] = dlp[:, :S]
        dx = np.zeros_like(x)
        for i, (proj, lin) in enumerate(self.tails):
            dti = dlp[:, self.bounds[i] : self.bounds[i + 1]]
            dhead[:, S + i] = dti.sum(axis=1)
            dzi = dti - np.exp(tails[i]) * dhead[:, S + i : S + i + 1]
            dx += proj.backward(lin.backward(dzi, hs[i]), x)
        dz = dhead - softmax(head) * dhead.sum(axis=1, keepdims=True)
        dx += self.head.backward(dz, x)
        return dx
