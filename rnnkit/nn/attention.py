"""Attention over an encoder's outputs: additive (Bahdanau), dot and general (Luong), masked.

For decoder queries ``q_t`` (B, T, Hq) and encoder outputs ("memory") ``m_s`` (B, S, Hm)::

    dot       e_ts = q_t . m_s                                   (needs Hq == Hm)
    general   e_ts = q_t . (m_s W_a)                 W_a (Hm, Hq)
    additive  e_ts = v . tanh(q_t W_q + m_s W_k + b) W_q (Hq, A), W_k (Hm, A), b, v (A,)

    a_t = softmax over real s of e_t        (a_ts = 0 exactly where mask[b, s] is False)
    c_t = sum_s a_ts m_s                     context (B, T, Hm)

The memory-side part of each score (``K = m W_a`` or ``m W_k + b``, the "keys") does not depend
on the query, so it is computed once per source batch by :meth:`Attention.keys` and reused for
every decoder step; :meth:`Attention.keys_backward` turns the gradient summed over all steps into
the memory gradient with one multiply.

Backward, with ``g = dc`` (B, T, Hm) and optional ``da`` (gradient w.r.t. the weights)::

    da  = g m^T (+ da)                       dm  = a^T g            (context)
    de  = a * (da - sum_s a da)              (softmax; 0 on padding since a = 0 there)
    dot:      dq = de m          dm += de^T q
    general:  dq = de K          dK  = de^T q     dW_a = m^T dK,  dm += dK W_a^T
    additive: dP = (1 - E^2) * (de v)  with E = tanh(P) (B, T, S, A) stored by the forward
              dv = sum E de,  dq = (sum_s dP) W_q^T,  dW_q = q^T sum_s dP,
              dK = sum_t dP,  dW_k = m^T dK,  db = sum dK,  dm += dK W_k^T

>>> att = Attention("general", 4, 6, rng=0)
>>> m = np.ones((2, 5, 6)); mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
>>> c, a, cache = att.forward(np.ones((2, 3, 4)), m, mask)
>>> c.shape, a.shape, float(a[0, :, 3:].max()), np.allclose(a.sum(-1), 1)
((2, 3, 6), (2, 3, 5), 0.0, True)
"""

from __future__ import annotations

import numpy as np

from ..checks import check_array
from ..errors import ConfigError, ShapeError
from . import init as initializers
from .module import Module

KINDS = ("dot", "general", "additive")


def masked_softmax(scores: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """Softmax over the last axis of ``scores`` (B, T, S) where ``mask`` (B, S) is True; exactly
    0 elsewhere.  Every row needs at least one True.  Overwrites ``scores``."""
    if mask is not None:
        np.copyto(scores, -np.inf, where=~mask[:, None, :])
    scores -= scores.max(axis=-1, keepdims=True)
    np.exp(scores, out=scores)
    scores /= scores.sum(axis=-1, keepdims=True)
    return scores


def masked_softmax_backward(da: np.ndarray, a: np.ndarray) -> np.ndarray:
    """``de = a * (da - sum_s a da)``; zero wherever ``a`` is (padding)."""
    return a * (da - (a * da).sum(axis=-1, keepdims=True))


def _mm(x: np.ndarray, W: np.ndarray) -> np.ndarray:
    """``x (..., D) @ W (D, O)`` as one 2-D multiply."""
    return (x.reshape(-1, x.shape[-1]) @ W).reshape(*x.shape[:-1], W.shape[1])


class Attention(Module):
    """Parameters and configuration of one attention type; the math is in the methods below.

    ``Attention(kind, query_size, memory_size, attention_size)``; ``attention_size`` (A) is used
    by ``"additive"`` only (default ``query_size``).
    """

    def __init__(self, kind: str, query_size: int, memory_size: int,
                 attention_size: int | None = None, *, dtype="float32", rng=None):
        super().__init__()
        if kind not in KINDS:
            raise ConfigError(f"attention must be one of {list(KINDS)}, got {kind!r}")
        if kind == "dot" and query_size != memory_size:
            raise ConfigError(f"dot attention needs query and memory of one size, got "
                              f"{query_size} and {memory_size}; use 'general' or 'additive'")
        rng = initializers.as_rng(rng)
        dt = np.dtype(dtype)
        self.kind, self.query_size, self.memory_size = kind, query_size, memory_size
        self.attention_size = attention_size or query_size
        A = self.attention_size
        if kind == "general":
            self.add_param("W_a", initializers.xavier_uniform(rng, memory_size, query_size, dt))
        elif kind == "additive":
            self.add_param("W_q", initializers.xavier_uniform(rng, query_size, A, dt))
            self.add_param("W_k", initializers.xavier_uniform(rng, memory_size, A, dt))
            self.add_param("b", np.zeros(A, dt))
            self.add_param("v", initializers.uniform(rng, (A,), np.sqrt(3.0 / A), dt))

    # -- public, checked ------------------------------------------------------------------
    def forward(self, query, memory, mask=None):
        """``query`` (B, T, Hq), ``memory`` (B, S, Hm), ``mask`` (B, S) bool or None ->
        ``(context (B, T, Hm), weights (B, T, S), cache)``."""
        memory, mask = self.check_memory(memory, mask)
        B = memory.shape[0]
        query = check_array("Attention", "query", query, (B, "T", self.query_size))
        keys, kcache = self.keys(memory)
        context, weights, cache = self.attend(query, keys, memory, mask)
        return context, weights, (cache, kcache)

    def backward(self, dcontext, cache, dweights=None):
        """Accumulate parameter gradients; returns ``(dquery, dmemory)``."""
        cache, kcache = cache
        dquery, dkeys, dmemory = self.attend_backward(dcontext, cache, dweights)
        dmemory += self.keys_backward(dkeys, kcache)
        return dquery, dmemory

    def check_memory(self, memory, mask):
        memory = check_array("Attention", "memory", memory, ("B", "S", self.memory_size))
        B, S, _ = memory.shape
        if mask is not None:
            mask = check_array("Attention", "mask", mask, (B, S)).astype(bool)
            if not mask.any(axis=1).all():
                raise ShapeError("Attention: every row of mask needs at least one True "
                                 "(a source of length 0 has nothing to attend to)")
        return memory, mask

    # -- the parts, unchecked: the decoders call these ---------------------------------------
    def keys(self, memory):
        """The query-independent half of the scores, once per source batch: ``(keys, cache)``;
        keys (B, S, Hq) for general, (B, S, A) for additive, the memory itself for dot."""
        p = self.param
        if self.kind == "dot":
            return memory, None
        if self.kind == "general":
            return _mm(memory, p["W_a"]), memory  # (B, S, Hq)
        keys = _mm(memory, p["W_k"])  # (B, S, A)
        keys += p["b"]
        return keys, memory

    def keys_backward(self, dkeys, memory):
        """Gradient of the keys (summed over every step that used them) -> dmemory."""
        p, g = self.param, self.grad
        if self.kind == "dot":
            return dkeys
        W = p["W_a"] if self.kind == "general" else p["W_k"]
        name = "W_a" if self.kind == "general" else "W_k"
        d2 = dkeys.reshape(-1, dkeys.shape[-1])
        g[name] += memory.reshape(-1, memory.shape[-1]).T @ d2
        if self.kind == "additive":
            g["b"] += d2.sum(axis=0)
        return (d2 @ W.T).reshape(memory.shape)

    def attend(self, query, keys, memory, mask):
        """Scores, masked softmax and context for ``query`` (B, T, Hq)."""
        p = self.param
        E = None
        if self.kind == "additive":
            qp = _mm(query, p["W_q"])  # (B, T, A)
            E = np.tanh(qp[:, :, None, :] + keys[:, None, :, :])  # (B, T, S, A)
            scores = _mm(E, p["v"][:, None])[..., 0]  # (B, T, S)
        else:
            scores = query @ keys.transpose(0, 2, 1)  # (B, T, S)
        weights = masked_softmax(scores, mask)
        context = weights @ memory  # (B, T, Hm)
        return context, weights, (query, keys, memory, weights, E)

    def attend_backward(self, dcontext, cache, dweights=None):
        """-> ``(dquery, dkeys, dmemory)``; accumulates ``W_q``, ``v`` (additive)."""
        query, keys, memory, a, E = cache
        da = dcontext @ memory.transpose(0, 2, 1)  # (B, T, S)
        if dweights is not None:
            da += dweights
        dmemory = a.transpose(0, 2, 1) @ dcontext  # (B, S, Hm)
        de = masked_softmax_backward(da, a)  # (B, T, S)
        if self.kind != "additive":
            dquery = de @ keys
            dkeys = de.transpose(0, 2, 1) @ query
            return dquery, dkeys, dmemory
        p, g = self.param, self.grad
        A = self.attention_size
        g["v"] += E.reshape(-1, A).T @ de.reshape(-1)
        dP = de[..., None] * p["v"]  # (B, T, S, A)
        dP *= 1 - E * E
        dqp = dP.sum(axis=2)  # (B, T, A)
        dkeys = dP.sum(axis=1)  # (B, S, A)
        g["W_q"] += query.reshape(-1, query.shape[-1]).T @ dqp.reshape(-1, A)
        dquery = _mm(dqp, p["W_q"].T)
        return dquery, dkeys, dmemory
