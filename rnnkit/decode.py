"""Choosing the next token from a softmax, and beam search, for any model with a ``step``.

``step(token_ids (K,), state) -> (logits (K, V), state)`` carries the recurrent state, so every
generated token costs one step: the prefix is never run again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from .nn.losses import log_softmax


def filter_logits(logits: np.ndarray, top_k: int = 0, top_p: float = 1.0) -> np.ndarray:
    """Keep the ``top_k`` largest logits and the smallest set whose probability reaches
    ``top_p`` (nucleus sampling); the rest become ``-inf``.  ``logits`` (V,)."""
    z = np.array(logits, dtype=np.float64)
    V = z.shape[-1]
    if top_k and 0 < top_k < V:
        kth = np.partition(z, V - top_k)[V - top_k]
        z[z < kth] = -np.inf
    if top_p < 1.0:
        order = np.argsort(-z)
        p = np.exp(z[order] - z[order[0]])
        p /= p.sum()
        keep = np.cumsum(p) - p < top_p  # tokens before the mass reaches top_p, plus one
        z[order[~keep]] = -np.inf
    return z


def check_sampling(temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0) -> None:
    """Raise ``ValueError`` for a temperature < 0, ``top_k`` < 0 or ``top_p`` outside (0, 1]."""
    if not temperature >= 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if top_k < 0:
        raise ValueError(f"top_k must be >= 0, got {top_k}")


def choose(logits: np.ndarray, rng: np.random.Generator, temperature: float = 1.0,
           top_k: int = 0, top_p: float = 1.0) -> int:
    """One token id from ``logits`` (V,): greedy when ``temperature == 0``."""
    check_sampling(temperature, top_k, top_p)
    if temperature == 0:
        return int(np.argmax(logits))
    z = filter_logits(np.asarray(logits, dtype=np.float64) / temperature, top_k, top_p)
    p = np.exp(z - z.max())
    p /= p.sum()
    return int(rng.choice(p.shape[0], p=p))


def generate(step: Callable, state, first: int, length: int, rng: np.random.Generator, *,
             temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
             logits=None, stop: int | None = None) -> Iterator[int]:
    """Yield ``length`` token ids one at a time (streaming).  ``first`` is fed first unless
    ``logits`` (already computed after a prime) are given; stops early at ``stop``.

    Each token after the first costs exactly one ``step`` (none after the last token).
    """
    check_sampling(temperature, top_k, top_p)
    if length <= 0:
        return
    if logits is None:
        logits, state = step(np.array([first]), state)
    for i in range(length):
        tok = choose(logits[0], rng, temperature, top_k, top_p)
        yield tok
        if (stop is not None and tok == stop) or i == length - 1:
            return
        logits, state = step(np.array([tok]), state)


@dataclass
class Hypothesis:
    tokens: list[int]
    logp: float
    finished: bool

    def score(self, alpha: float) -> float:
        """Log probability divided by ``len ** alpha`` (length normalisation; 0 disables)."""
        n = max(1, len(self.tokens))
        return self.logp / (n ** alpha) if alpha else self.logp


def _take(state, idx):
    if isinstance(state, tuple):
        return type(state)(*(s[:, idx] for s in state))
    return state[:, idx]


def beam_search(step: Callable, state, first: int, beam: int, max_len: int, *,
                eos: int | None = None, alpha: float = 0.0, logits=None) -> list[Hypothesis]:
    """Beam search over ``step``; returns the finished hypotheses, best first.

    ``state`` is the model state for a batch of one (layout (L, 1, H) or a tuple of those);
    hypotheses end at ``eos`` or at ``max_len`` tokens.  With ``beam == 1`` this is greedy.
    """
    if beam < 1:
        raise ValueError(f"beam width must be at least 1, got {beam}")
    if logits is None:
        logits, state = step(np.array([first]), state)
    logp = log_softmax(np.asarray(logits, dtype=np.float64))[0]  # (V,)
    V = logp.shape[0]
    live = [Hypothesis([], 0.0, False)]
    states = state
    cur = logp[None, :]  # (K, V)
    done: list[Hypothesis] = []
    for t in range(max_len):
        total = np.array([h.logp for h in live])[:, None] + cur  # (K, V)
        flat = total.reshape(-1)
        # 2K candidates: even if K of them end at eos, K live hypotheses remain
        n = min(2 * beam, flat.size)
        best = np.argpartition(-flat, n - 1)[:n]
        best = best[np.argsort(-flat[best], kind="stable")]
        keep_rows, keep_tok, new_live = [], [], []
        for j in best:
            k, tok = divmod(int(j), V)
            h = Hypothesis(live[k].tokens + [tok], float(flat[j]), False)
            if eos is not None and tok == eos:
                h.finished = True
                done.append(h)
            else:
                new_live.append(h)
                keep_rows.append(k)
                keep_tok.append(tok)
            if len(new_live) == beam:
                break
        live = new_live
        if not live or t == max_len - 1 or _settled(done, live, beam, alpha):
            break
        states = _take(states, np.array(keep_rows))
        logits, states = step(np.array(keep_tok), states)
        cur = log_softmax(np.asarray(logits, dtype=np.float64))
    done += live  # unfinished hypotheses (cut at max_len) compete too
    done.sort(key=lambda h: -h.score(alpha))
    return done[:beam]


def _settled(done: list[Hypothesis], live: list[Hypothesis], beam: int, alpha: float) -> bool:
    """True when ``beam`` hypotheses have finished and (without length normalisation, where
    log probabilities only fall) no live one can still beat the worst of the best ``beam``."""
    if len(done) < beam:
        return False
    if alpha:
        return True
    worst = sorted(h.logp for h in done)[-beam]
    return max(h.logp for h in live) <= worst
