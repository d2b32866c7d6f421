"""Choosing the next token from a softmax, and beam search, for any model with a ``step``.

``step(token_ids (K,), state) -> (logits (K, V), state)`` carries the recurrent state, so every
generated token costs one step: the prefix is never run again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

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
    """Raise ``ValueError`` for a temperature < 0 or not finite, ``top_k`` < 0 or ``top_p``
    outside (0, 1]."""
    if not 0 <= temperature < float("inf"):
        raise ValueError(f"temperature must be >= 0 and finite, got {temperature}")
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
    """A beam-search result: ``tokens`` (without the final ``eos``), their total log probability
    ``logp``, whether ``eos`` ended it (``finished``), and ``trace``: what a tracing ``step``
    reported for each token (for seq2seq, the attention weights (S,)), one entry per token
    including the ``eos``."""

    tokens: list[int]
    logp: float
    finished: bool
    trace: list = field(default_factory=list)

    def __len__(self) -> int:
        """The number of tokens scored, the ``eos`` of a finished hypothesis included."""
        return len(self.tokens) + self.finished

    @property
    def weights(self) -> np.ndarray | None:
        """``trace`` stacked into one array (n, ...) (for seq2seq the attention weights (n, S)),
        or ``None`` when nothing was traced."""
        return np.stack(self.trace) if self.trace else None

    def score(self, alpha: float) -> float:
        """``logp / len ** alpha`` (length normalisation; ``alpha = 0`` ranks by ``logp``)."""
        return self.logp / max(1, len(self)) ** alpha if alpha else self.logp


def _take(state, idx):
    if isinstance(state, tuple):
        return type(state)(*(s[:, idx] for s in state))
    return state[:, idx]


def beam_search(step: Callable, state, first: int, beam: int, max_len: int, *,
                eos: int | None = None, alpha: float = 0.0, logits=None,
                reorder: Callable | None = None, trace: bool = False) -> list[Hypothesis]:
    """Beam search over ``step``; returns up to ``beam`` hypotheses, best first.

    ``state`` is the model state for a batch of one; ``reorder(state, idx)`` picks the rows
    ``idx`` of it (default: ``state[:, idx]``, or that for each member of a tuple such as
    ``(h, c)``).  ``first`` is fed first unless its ``logits`` (1, V) are given.  With
    ``trace=True``, ``step`` returns ``(logits, state, extra)`` and row ``k`` of ``extra``
    (or ``None``) is appended to the ``trace`` of the hypothesis that token extends.

    The rule, the same for every model:

    1. every live hypothesis is extended by every token; the ``2 * beam`` best candidates by
       total log probability are taken in order (ties: the earlier hypothesis, then the lower
       token id);
    2. a candidate ending in ``eos`` finishes if it is among the ``beam`` best candidates
       (otherwise it is dropped); the first ``beam`` others stay live;
    3. search stops when ``beam`` hypotheses have finished -- with ``alpha == 0`` only once no
       live hypothesis can still beat the worst of the ``beam`` best finished ones (log
       probabilities only fall as tokens are added, so that bound is exact) -- or when no live
       hypothesis is left, or after ``max_len`` tokens; in the last case the live hypotheses
       compete as unfinished results;
    4. results are ranked by ``logp / len ** alpha`` where ``len`` counts the ``eos``
       (length normalisation; ``alpha = 0`` ranks by ``logp``).

    With ``beam == 1`` this is greedy decoding.  Each token costs one ``step`` of the live
    hypotheses (none after the last).
    """
    if not isinstance(beam, (int, np.integer)) or beam < 1:
        raise ValueError(f"beam width must be at least 1, got {beam!r}")
    if max_len < 1:
        raise ValueError(f"max_len must be at least 1, got {max_len}")
    reorder = _take if reorder is None else reorder
    extra = None
    if logits is None:
        out = step(np.array([first]), state)
        logits, state = out[0], out[1]
        extra = out[2] if trace else None
    cur = log_softmax(np.asarray(logits, dtype=np.float64))  # (K, V)
    V = cur.shape[1]
    live = [Hypothesis([], 0.0, False)]
    done: list[Hypothesis] = []
    for t in range(max_len):
        flat = (np.array([h.logp for h in live])[:, None] + cur).reshape(-1)  # (K*V,)
        # 2K candidates: even if K of them end at eos, K live hypotheses remain
        n = min(2 * beam, flat.size)
        best = np.argpartition(-flat, n - 1)[:n]
        best = best[np.argsort(-flat[best], kind="stable")]
        rows, toks, nxt = [], [], []
        for rank, j in enumerate(best):
            k, tok = divmod(int(j), V)
            steps = live[k].trace + [extra[k]] if extra is not None else live[k].trace
            if eos is not None and tok == eos:
                if rank < beam:
                    done.append(Hypothesis(live[k].tokens, float(flat[j]), True, steps))
            elif len(nxt) < beam:
                nxt.append(Hypothesis(live[k].tokens + [tok], float(flat[j]), False, steps))
                rows.append(k)
                toks.append(tok)
        live = nxt
        if not live or _settled(done, live, beam, alpha):
            live = []
            break
        if t == max_len - 1:
            break
        out = step(np.array(toks), reorder(state, np.array(rows)))
        state, extra = out[1], (out[2] if trace else None)
        cur = log_softmax(np.asarray(out[0], dtype=np.float64))
    done += live  # cut at max_len: unfinished hypotheses compete too
    done.sort(key=lambda h: -h.score(alpha))
    return done[:beam]


def _settled(done: list[Hypothesis], live: list[Hypothesis], beam: int, alpha: float) -> bool:
    """True when ``beam`` hypotheses have finished and (with ``alpha == 0``, where log
    probabilities only fall) no live one can still beat the worst of the best ``beam``."""
    if len(done) < beam:
        return False
    if alpha:
        return True
    worst = sorted(h.logp for h in done)[-beam]
    return max(h.logp for h in live) <= worst
