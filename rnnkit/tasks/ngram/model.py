"""Count-based n-gram language models: interpolated Kneser-Ney (plain or modified) and add-k.

The model reads one stream of token ids, the same stream an RNN language model is trained on
(word level: ``<eos>`` ends every line, so it also plays the part of ``<s>``), and predicts
``w_i`` from the ``n - 1`` tokens before it.  Orders k = 1..n keep their own count table.

**Interpolated Kneser-Ney** (Kneser & Ney 1995; Chen & Goodman 1999, eq. 11-13 and 17)::

    P_k(w | h) = (c_k(h w) - D_k(c_k(h w)))^+ / S_k(h)  +  G_k(h) / S_k(h) * P_{k-1}(w | h')
    S_k(h)     = sum_w c_k(h w)                     G_k(h) = sum_{w: c_k(h w) > 0} D_k(c_k(h w))
    P_0(w)     = 1 / V                              h' = h without its first token

``c_n`` is the raw count at the highest order; every lower order uses the continuation count
``c_k(g) = N1+(. g)``, the number of distinct tokens seen right before ``g``.  A context that was
never seen (``S_k(h) = 0``) backs off entirely: ``P_k(w | h) = P_{k-1}(w | h')``.  The unigram
level is discounted too and interpolated with the uniform distribution, so every token of the
vocabulary (``<pad>`` and ``<bos>`` included) has a probability above zero and every
distribution sums to 1 exactly.

* ``smoothing="kn"``: one discount per order, ``D = n1 / (n1 + 2 n2)`` (Ney et al. 1994), from
  the count-of-counts ``n_r`` of that order's counts (or ``discount=`` for all orders).
* ``smoothing="mkn"``: modified KN, three discounts per order for counts 1, 2 and 3+:
  ``Y = n1/(n1 + 2 n2)``, ``D1 = 1 - 2Y n2/n1``, ``D2 = 2 - 3Y n3/n2``, ``D3+ = 3 - 4Y n4/n3``.
* ``smoothing="addk"``: ``P(w | h) = (c(h w) + k) / (c(h) + k V)`` with raw counts of the full
  ``n``-gram and no back-off (an unseen context gives the uniform distribution).

Approximation: the first ``n - 2`` positions of a stream lack a full history; they use the
highest order their history allows, whose table holds continuation counts (Kneser-Ney) -- as
if the stream had been cut out of a longer text.

Storage: an n-gram of order k is an ``int64`` key ``index of its first k-1 tokens in the order
k-1 table * V + last token``, so keys never overflow (a trie flattened into sorted arrays); the
tables are sorted key arrays with a count array each.  Fitting is ``np.unique`` per order and
querying is ``np.searchsorted``: no Python loop over tokens.

    >>> lm = NGramLM(NGramConfig(vocab_size=4, order=2, smoothing="kn")).fit([0, 1, 0, 1, 2, 0])
    >>> round(float(lm.prob_dist([1]).sum()), 12)
    1.0
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from ...checks import check_ids, config_from_dict
from ...errors import CheckpointError, ConfigError

SMOOTHINGS = ("mkn", "kn", "addk")
_MIN_DISCOUNT = 1e-3  # keeps G(h) > 0, so no token gets probability 0 on tiny corpora


@dataclass
class NGramConfig:
    """What rebuilds an :class:`NGramLM` (saved as JSON); the counts are saved as arrays."""

    vocab_size: int
    order: int = 5
    smoothing: str = "mkn"  # "mkn" | "kn" | "addk"
    discount: float | None = None  # "kn" only: a fixed D for every order (None: estimate)
    k: float = 1.0  # "addk" only

    def __post_init__(self):
        for name in ("vocab_size", "order"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"{name} must be a positive integer, got {v!r}")
        if self.smoothing not in SMOOTHINGS:
            raise ConfigError(f"smoothing must be one of {', '.join(SMOOTHINGS)}, "
                              f"got {self.smoothing!r}")
        if self.discount is not None:
            if self.smoothing != "kn":
                raise ConfigError("a fixed discount is for smoothing='kn' only")
            if not 0.0 < self.discount <= 1.0:
                raise ConfigError(f"discount must be in (0, 1], got {self.discount!r}")
        if not (isinstance(self.k, (int, float)) and self.k > 0):
            raise ConfigError(f"k must be a positive number, got {self.k!r}")

    @classmethod
    def from_dict(cls, d: dict) -> NGramConfig:
        return config_from_dict(cls, d, "n-gram")

    def to_dict(self) -> dict:
        return asdict(self)


def estimate_discounts(counts: np.ndarray, modified: bool) -> np.ndarray:
    """Discounts ``[D1, D2, D3+]`` from the count-of-counts of ``counts`` (zeros ignored).

    Plain KN returns ``[D, D, D]`` with ``D = n1 / (n1 + 2 n2)``.  Each ``Dc`` is clipped to
    ``[0.001, c]``; a missing count-of-count (tiny corpora) falls back to the value below it.
    """
    n = np.bincount(np.minimum(counts, 5), minlength=6).astype(np.float64)[1:5]  # n1..n4
    n1, n2, n3, n4 = n
    Y = n1 / (n1 + 2 * n2) if n1 > 0 else 0.5
    if not modified:
        D = np.full(3, Y)
    else:
        D1 = 1 - 2 * Y * n2 / n1 if n1 > 0 else Y
        D2 = 2 - 3 * Y * n3 / n2 if n2 > 0 else D1
        D3 = 3 - 4 * Y * n4 / n3 if n3 > 0 else D2
        D = np.array([D1, D2, D3])
    return np.clip(D, _MIN_DISCOUNT, [1.0, 2.0, 3.0])


def index_ngrams(ids: np.ndarray, order: int, V: int):
    """Every k-gram of ``ids`` (N,), k = 1..order: sorted unique keys and where they occur.

    Returns ``(keys, at, first)``: for each order ``keys[k-1]`` (U_k,) sorted ``int64``;
    ``at[k-1]`` (N,) the index in ``keys[k-1]`` of the k-gram ending at each position (-1
    where ``i < k - 1``); ``first[k-1]`` (U_k,) the position where each k-gram first ends.
    """
    N = ids.shape[0]
    keys, at, first = [], [], []
    prev = None
    for k in range(1, order + 1):
        if N < k:
            keys.append(np.zeros(0, np.int64))
            at.append(np.full(N, -1, np.int64))
            first.append(np.zeros(0, np.int64))
            continue
        if k == 1:
            key = ids
        else:
            _check_key_range(len(keys[-1]), V)
            key = prev[k - 2:N - 1] * V + ids[k - 1:]  # (N-k+1,): prefix index, last token
        u, where, inv = np.unique(key, return_index=True, return_inverse=True)
        idx = np.full(N, -1, np.int64)
        idx[k - 1:] = inv.reshape(-1)
        keys.append(u.astype(np.int64))
        at.append(idx)
        first.append(where.astype(np.int64) + (k - 1))
        prev = idx
    return keys, at, first


def _check_key_range(n_prefixes: int, V: int) -> None:
    if n_prefixes * V >= 2**63:
        raise ConfigError(f"n-gram keys would overflow int64 ({n_prefixes} contexts x V={V})")


class NGramLM:
    """An n-gram language model over token ids ``0..V-1``.

    ``fit(ids)`` counts; ``logprobs(ids)`` gives ``log P(ids[i] | ids[:i])`` for ``i >= 1``;
    ``perplexity(ids)``; ``prob_dist(context) -> (V,)``.  Not a :class:`~rnnkit.nn.module.Module`:
    it has counts, not trainable parameters.
    """

    kind = "ngram"

    def __init__(self, cfg: NGramConfig):
        self.cfg = cfg
        self.keys: list[np.ndarray] = []  # per order: sorted int64 keys (U_k,)
        self.counts: list[np.ndarray] = []  # per order: the counts that order uses (U_k,)
        self.discounts = np.zeros((cfg.order, 3))  # per order: D1, D2, D3+ (KN only)
        self._tables: list[dict] = []

    @property
    def fitted(self) -> bool:
        return bool(self.keys)

    # -- counting ---------------------------------------------------------------------------
    def fit(self, ids) -> NGramLM:
        """Count the n-grams of the token stream ``ids`` (N,).  Returns ``self``."""
        cfg = self.cfg
        ids = self._check_stream(ids, need=cfg.order)
        V, n = cfg.vocab_size, cfg.order
        keys, at, first = index_ngrams(ids, n, V)
        counts = []
        for k in range(1, n + 1):
            raw = np.bincount(at[k - 1][k - 1:], minlength=len(keys[k - 1]))
            if cfg.smoothing == "addk" or k == n:
                counts.append(raw.astype(np.int64))
            else:
                # continuation count N1+(. g): distinct (k+1)-grams whose last k tokens are g
                suffix = at[k - 1][first[k]]
                counts.append(np.bincount(suffix, minlength=len(keys[k - 1])).astype(np.int64))
        self.keys, self.counts = keys, counts
        if cfg.smoothing in ("kn", "mkn"):
            for k in range(n):
                if cfg.discount is not None:
                    self.discounts[k] = cfg.discount
                else:
                    self.discounts[k] = estimate_discounts(counts[k], cfg.smoothing == "mkn")
        self._build()
        return self

    def _build(self) -> None:
        """Per order: the discounted counts and, per context, ``S(h)`` and ``G(h)``."""
        V = self.cfg.vocab_size
        self._tables = []
        for k in range(1, self.cfg.order + 1):
            keys, c = self.keys[k - 1], self.counts[k - 1]
            n_ctx = 1 if k == 1 else len(self.keys[k - 2])
            ctx = np.zeros(len(keys), np.int64) if k == 1 else keys // V
            S = np.bincount(ctx, weights=c, minlength=n_ctx)  # (n_ctx,)
            if self.cfg.smoothing == "addk":
                kept, G = c.astype(np.float64), None
            else:
                D = np.concatenate([[0.0], self.discounts[k - 1]])[np.minimum(c, 3)]  # (U_k,)
                kept = c - D
                G = np.bincount(ctx, weights=D, minlength=n_ctx)
            self._tables.append({"kept": kept, "S": S, "G": G})

    # -- querying ---------------------------------------------------------------------------
    def _lookup(self, ids: np.ndarray) -> list[np.ndarray]:
        """For each order k: the index in ``keys[k-1]`` of the k-gram of ``ids`` ending at each
        position, or -1 where it was never seen (or the position is too early)."""
        V, N = self.cfg.vocab_size, ids.shape[0]
        out, prev = [], None
        for k in range(1, self.cfg.order + 1):
            idx = np.full(N, -1, np.int64)
            if k == 1:
                query, pos = ids.copy(), np.arange(N)
            else:
                pos = np.flatnonzero(prev[:-1] >= 0) + 1  # the prefix ends at pos - 1
                query = prev[pos - 1] * V + ids[pos]
            keys = self.keys[k - 1]
            j = np.searchsorted(keys, query)
            j_clip = np.minimum(j, max(len(keys) - 1, 0))
            found = (j < len(keys)) & (keys[j_clip] == query) if len(keys) else j < 0
            idx[pos[found]] = j[found]
            out.append(idx)
            prev = idx
        return out

    def logprobs(self, ids) -> np.ndarray:
        """``log P(ids[i] | ids[:i])`` (natural log) for ``i = 1..N-1``: shape (N-1,)."""
        self._check_fitted()
        ids = self._check_stream(ids, need=2)
        V = self.cfg.vocab_size
        idx = self._lookup(ids)
        N = ids.shape[0]
        t = np.arange(1, N)  # predicted positions
        if self.cfg.smoothing == "addk":
            p = np.full(N - 1, 1.0 / V)
            kk = self.cfg.k
            for k in range(1, self.cfg.order + 1):  # the highest order with a full history
                ok = t >= k - 1
                tab = self._tables[k - 1]
                c = np.zeros(N - 1)
                hit = idx[k - 1][t] >= 0
                c[hit] = tab["kept"][idx[k - 1][t][hit]]
                h = np.zeros(N - 1, np.int64) if k == 1 else idx[k - 2][t - 1]
                S = np.where(h >= 0, tab["S"][np.maximum(h, 0)], 0.0)
                p = np.where(ok, (c + kk) / (S + kk * V), p)
            return np.log(p)
        p = np.full(N - 1, 1.0 / V)
        for k in range(1, self.cfg.order + 1):
            tab = self._tables[k - 1]
            h = np.zeros(N - 1, np.int64) if k == 1 else idx[k - 2][t - 1]  # context index
            S = np.where(h >= 0, tab["S"][np.maximum(h, 0)], 0.0)
            live = S > 0
            if not live.any():
                break
            hit = idx[k - 1][t]
            kept = np.where(hit >= 0, tab["kept"][np.maximum(hit, 0)], 0.0)
            G = tab["G"][np.maximum(h, 0)]
            p = np.where(live, (kept + G * p) / np.where(live, S, 1.0), p)
        return np.log(p)

    def log_prob(self, ids) -> float:
        """Total natural-log probability of ``ids[1:]`` given what precedes each token."""
        return float(self.logprobs(ids).sum())

    def perplexity(self, ids) -> float:
        """``exp(-mean log P)`` over the predicted tokens ``ids[1:]``."""
        lp = self.logprobs(ids)
        mean = -float(lp.mean())
        return math.exp(mean) if mean < 700 else math.inf

    def prob_dist(self, context) -> np.ndarray:
        """``P(w | context)`` for every token w: (V,) summing to 1.  Only the last ``n - 1``
        tokens of ``context`` (any length, empty too) matter."""
        self._check_fitted()
        V, n = self.cfg.vocab_size, self.cfg.order
        context = np.asarray(context, dtype=np.int64).reshape(-1)
        check_ids("NGramLM", "context", context, V)
        context = context[len(context) - min(len(context), n - 1):]
        idx = self._lookup(context) if len(context) else []
        p = np.full(V, 1.0 / V)
        for k in range(1, n + 1):
            if k - 1 > len(context):
                break
            h = 0 if k == 1 else int(idx[k - 2][-1])
            tab = self._tables[k - 1]
            S = float(tab["S"][h]) if h >= 0 else 0.0
            if S <= 0:
                if self.cfg.smoothing == "addk":
                    p = np.full(V, 1.0 / V)
                continue
            keys = self.keys[k - 1]
            lo, hi = np.searchsorted(keys, [h * V, (h + 1) * V]) if k > 1 else (0, len(keys))
            words = keys[lo:hi] % V
            if self.cfg.smoothing == "addk":
                kk = self.cfg.k
                p = np.full(V, kk / (S + kk * V))
                p[words] += tab["kept"][lo:hi] / (S + kk * V)
            else:
                p *= tab["G"][h] / S
                p[words] += tab["kept"][lo:hi] / S
        return p

    def sample(self, context, length: int, rng: np.random.Generator,
               temperature: float = 1.0) -> np.ndarray:
        """``length`` token ids drawn one by one from ``prob_dist`` (sharpened by
        ``p ** (1 / temperature)``; 0 is greedy), continuing ``context``."""
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        hist = [int(t) for t in np.asarray(context, dtype=np.int64).reshape(-1)]
        out = []
        for _ in range(length):
            p = self.prob_dist(hist[len(hist) - min(len(hist), self.cfg.order - 1):])
            if temperature == 0:
                tok = int(np.argmax(p))
            else:
                q = np.exp(np.log(p) / temperature - np.log(p).max() / temperature)
                tok = int(rng.choice(p.shape[0], p=q / q.sum()))
            hist.append(tok)
            out.append(tok)
        return np.array(out, dtype=np.int64)

    # -- sizes and saving ---------------------------------------------------------------------
    def num_ngrams(self) -> list[int]:
        """How many distinct n-grams each order stores (orders 1..n)."""
        return [len(k) for k in self.keys]

    def state_arrays(self) -> dict[str, np.ndarray]:
        """The numeric arrays a checkpoint stores (``order{k}.keys``/``.counts``, discounts)."""
        self._check_fitted()
        out = {"discounts": self.discounts.copy()}
        for k, (keys, c) in enumerate(zip(self.keys, self.counts), start=1):
            out[f"order{k}.keys"] = keys
            out[f"order{k}.counts"] = c
        return out

    @classmethod
    def from_arrays(cls, cfg: NGramConfig, arrays: dict[str, np.ndarray]) -> NGramLM:
        lm = cls(cfg)
        try:
            lm.discounts = np.asarray(arrays["discounts"], np.float64).reshape(cfg.order, 3)
            for k in range(1, cfg.order + 1):
                keys = np.asarray(arrays[f"order{k}.keys"])
                c = np.asarray(arrays[f"order{k}.counts"])
                if keys.dtype.kind not in "iu" or c.dtype.kind not in "iu" or \
                        keys.shape != c.shape or keys.ndim != 1:
                    raise ValueError(f"order {k}: keys and counts must be 1-D integer arrays "
                                     "of the same length")
                if len(keys) > 1 and not (np.diff(keys) > 0).all():
                    raise ValueError(f"order {k}: keys are not sorted")
                lm.keys.append(keys.astype(np.int64))
                lm.counts.append(c.astype(np.int64))
        except (KeyError, ValueError) as e:
            raise CheckpointError(f"n-gram arrays unusable: {e}") from None
        lm._build()
        return lm

    # -- checks -----------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not self.fitted:
            raise ConfigError("NGramLM: not fitted yet; call fit(ids) first")

    def _check_stream(self, ids, need: int) -> np.ndarray:
        ids = np.asarray(ids)
        if ids.ndim != 1:
            raise ValueError(f"NGramLM: expected ids of shape (N,), got {ids.shape}")
        if ids.shape[0] < need:
            raise ValueError(f"NGramLM: expected at least {need} tokens, got {ids.shape[0]}")
        return check_ids("NGramLM", "ids", ids, self.cfg.vocab_size).astype(np.int64)


def save_ngram(path, model: NGramLM, tokenizer=None, data_info: dict | None = None):
    """Write ``model`` as a checkpoint of kind ``"ngram"`` (counts as integer arrays)."""
    from ...train.checkpoint import save_checkpoint

    config = {"model": model.cfg.to_dict(), "data": data_info or {},
              "num_ngrams": model.num_ngrams()}
    return save_checkpoint(path, kind="ngram", config=config, weights=model.state_arrays(),
                           vocab=tokenizer.to_dict() if tokenizer is not None else None)


def load_ngram(path):
    """Load an ``"ngram"`` checkpoint: ``(model, tokenizer or None, checkpoint)``."""
    from ...text.tokenizers import tokenizer_from_dict
    from ...train.checkpoint import load_checkpoint

    ck = load_checkpoint(path, kind="ngram", weights_only=True)
    cfg, tokenizer = ck.read(lambda: (
        NGramConfig.from_dict(ck.config["model"]),
        tokenizer_from_dict(ck.vocab) if ck.vocab is not None else None))
    if tokenizer is not None and len(tokenizer.vocab) != cfg.vocab_size:
        raise CheckpointError(f"{ck.path}: vocabulary has {len(tokenizer.vocab)} tokens but the "
                              f"model expects {cfg.vocab_size}")
    return NGramLM.from_arrays(cfg, ck.weights), tokenizer, ck
