"""A vocabulary: an ordered list of tokens and the map from token to integer id.

Special tokens come first, in the order given, then the ordinary tokens by descending count and,
among equal counts, by the token itself, so the same text always gives the same ids::

    >>> v = Vocab.build("b a b c b a".split(), specials=(PAD, UNK))
    >>> v.tokens
    ('<pad>', '<unk>', 'b', 'a', 'c')
    >>> v.encode(["a", "b", "zzz"], warn=False).tolist()
    [3, 2, 1]
    >>> v.decode([2, 3])
    ['b', 'a']

The tokenizers use ``specials=(PAD, UNK, BOS, EOS)`` (word level) or ``(PAD, UNK, BOS)`` (char
level), so ``<pad>`` is always id 0, ``<unk>`` id 1 and ``<bos>`` id 2, and at word level
``<eos>`` is id 3.  A special token that also occurs in the text (PTB already contains ``<unk>``)
keeps its special id; its count is ignored.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from ..errors import DataError

PAD = "<pad>"
UNK = "<unk>"
EOS = "<eos>"
BOS = "<bos>"

_MAX_SHOWN = 5  # unknown tokens quoted in a warning or error


class UnknownTokenWarning(UserWarning):
    """Some tokens were not in the vocabulary and were mapped to ``<unk>``."""


class Vocab:
    """Ordered tokens with ``stoi`` (token -> id); ``tokens[i]`` is the token of id ``i``.

    Build one with :meth:`Vocab.build` or restore one with :meth:`Vocab.from_dict`.
    """

    def __init__(self, tokens: Sequence[str], specials: Sequence[str] = ()):
        tokens = tuple(tokens)
        specials = tuple(specials)
        _check_tokens(tokens, specials)
        self.tokens: tuple[str, ...] = tokens
        self.specials: tuple[str, ...] = specials
        self.stoi: dict[str, int] = {t: i for i, t in enumerate(tokens)}

    @classmethod
    def build(
        cls,
        tokens: Iterable[str] | Mapping[str, int],
        min_count: int = 1,
        max_size: int | None = None,
        specials: Sequence[str] = (PAD, UNK, BOS, EOS),
    ) -> Vocab:
        """Build a vocabulary from a token stream or a ``{token: count}`` mapping.

        ``min_count``: tokens seen fewer times are left out (they will encode as ``<unk>``).
        ``max_size``: the most entries the vocabulary may hold, *specials included*, so
        ``len(vocab) <= max_size``; the least frequent tokens are left out first.
        """
        if not isinstance(min_count, int) or min_count < 1:
            raise DataError(f"Vocab.build: min_count must be an integer >= 1, got {min_count!r}")
        specials = tuple(specials)
        if max_size is not None and (not isinstance(max_size, int) or max_size < len(specials)):
            raise DataError(
                f"Vocab.build: max_size must be an integer >= {len(specials)} (the number of "
                f"special tokens), got {max_size!r}"
            )
        counts = tokens if isinstance(tokens, Mapping) else Counter(tokens)
        special_set = set(specials)
        kept = [(t, c) for t, c in counts.items() if c >= min_count and t not in special_set]
        kept.sort(key=lambda tc: (-tc[1], tc[0]))
        ordinary = [t for t, _ in kept]
        if max_size is not None:
            ordinary = ordinary[: max_size - len(specials)]
        return cls(specials + tuple(ordinary), specials)

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: object) -> bool:
        return token in self.stoi

    def __iter__(self):
        return iter(self.tokens)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Vocab):
            return NotImplemented
        return self.tokens == other.tokens and self.specials == other.specials

    def __repr__(self) -> str:
        return f"Vocab({len(self)} tokens, specials={list(self.specials)})"

    def index(self, token: str) -> int:
        """The id of ``token``; :class:`DataError` if it is not in the vocabulary."""
        try:
            return self.stoi[token]
        except KeyError:
            raise DataError(f"Vocab: token {token!r} is not in the vocabulary") from None

    # Ids of the special tokens; each raises DataError if this vocabulary lacks it.
    @property
    def pad_id(self) -> int:
        return self._special_id(PAD)

    @property
    def unk_id(self) -> int:
        return self._special_id(UNK)

    @property
    def bos_id(self) -> int:
        return self._special_id(BOS)

    @property
    def eos_id(self) -> int:
        return self._special_id(EOS)

    def _special_id(self, token: str) -> int:
        i = self.stoi.get(token)
        if i is None:
            raise DataError(f"Vocab: this vocabulary has no {token} token")
        return i

    def encode(
        self,
        tokens: Iterable[str],
        *,
        unknown: str = "unk",
        warn: bool = True,
        stacklevel: int = 2,
    ) -> np.ndarray:
        """Token ids as an ``int64`` array of the same length as ``tokens``.

        ``unknown="unk"`` maps tokens outside the vocabulary to ``<unk>`` and, if ``warn``,
        issues one :class:`UnknownTokenWarning` giving how many there were and the first few
        (``stacklevel`` as in :func:`warnings.warn`); ``unknown="error"`` raises
        :class:`DataError` naming the first unknown token.
        """
        if unknown not in ("unk", "error"):
            raise DataError(f"Vocab.encode: unknown must be 'unk' or 'error', got {unknown!r}")
        get = self.stoi.get
        ids = np.fromiter((get(t, -1) for t in tokens), dtype=np.int64)  # (N,)
        missing = ids < 0
        if not missing.any():
            return ids
        if not isinstance(tokens, Sequence):
            tokens = None  # consumed; name the unknown tokens by position only
        first = int(np.argmax(missing))
        if unknown == "error":
            what = repr(tokens[first]) if tokens is not None else "a token"
            raise DataError(f"Vocab.encode: {what} at position {first} is not in the vocabulary")
        unk = self.unk_id
        ids[missing] = unk
        if warn:
            n = int(missing.sum())
            shown = ""
            if tokens is not None:
                seen: dict[str, None] = {}
                for i in np.flatnonzero(missing):
                    seen.setdefault(tokens[i])
                    if len(seen) == _MAX_SHOWN:
                        break
                shown = ", first: " + ", ".join(repr(t) for t in seen)
            warnings.warn(
                f"{n} of {len(ids)} tokens are not in the vocabulary and became {UNK}{shown}",
                UnknownTokenWarning,
                stacklevel=stacklevel,
            )
        return ids

    def decode(self, ids) -> list[str]:
        """The tokens of ``ids`` (any integer array-like of 0..len-1)."""
        ids = np.asarray(ids)
        if ids.size == 0:
            return []
        if ids.dtype.kind not in "iu":
            raise DataError(f"Vocab.decode: expected integer ids, got dtype {ids.dtype}")
        lo, hi = int(ids.min()), int(ids.max())
        if lo < 0 or hi >= len(self.tokens):
            raise DataError(
                f"Vocab.decode: ids must be in 0..{len(self.tokens) - 1}, got values from "
                f"{lo} to {hi}"
            )
        tokens = self.tokens
        return [tokens[i] for i in ids.ravel().tolist()]

    def to_dict(self) -> dict:
        """A JSON-able dict; :meth:`from_dict` restores the same vocabulary."""
        return {"tokens": list(self.tokens), "specials": list(self.specials)}

    @classmethod
    def from_dict(cls, d: Mapping) -> Vocab:
        if not isinstance(d, Mapping):
            raise DataError(f"Vocab.from_dict: expected a dict, got {type(d).__name__}")
        keys = set(d)
        if keys != {"tokens", "specials"}:
            raise DataError(
                "Vocab.from_dict: expected keys ['specials', 'tokens'], got "
                f"{sorted(map(str, keys))}"
            )
        for key in ("tokens", "specials"):
            value = d[key]
            if not isinstance(value, (list, tuple)) or not all(isinstance(t, str) for t in value):
                raise DataError(f"Vocab.from_dict: {key!r} must be a list of strings")
        return cls(d["tokens"], d["specials"])


def _check_tokens(tokens: tuple, specials: tuple) -> None:
    if len(set(tokens)) != len(tokens):
        dup = next(t for t, c in Counter(tokens).items() if c > 1)
        raise DataError(f"Vocab: token {dup!r} appears more than once")
    if tokens[: len(specials)] != specials:
        raise DataError(
            f"Vocab: the special tokens {list(specials)} must be the first tokens, in order"
        )


# -- vocabularies of labelled sentences ------------------------------------------------------


def build_vocab(sequences: Sequence[Sequence[str]], min_count: int = 1,
                max_size: int | None = None) -> Vocab:
    """Word vocabulary ``<pad>`` = 0, ``<unk>`` = 1, then words by descending count."""
    return Vocab.build((t for s in sequences for t in s), min_count, max_size, (PAD, UNK))


def build_char_vocab(sequences: Sequence[Sequence[str]], min_count: int = 1) -> Vocab:
    """Character vocabulary over the words of ``sequences``: ``<pad>`` = 0, ``<unk>`` = 1."""
    counts: Counter = Counter()
    for s in sequences:
        for w in s:
            counts.update(w)
    return Vocab.build(counts, min_count, None, (PAD, UNK))


def encode_sequences(vocab: Vocab, sequences: Sequence[Sequence[str]],
                     lowercase: bool = False) -> list[np.ndarray]:
    """Ids of every sequence; unknown words become ``<unk>`` without a warning."""
    if lowercase:
        return [vocab.encode([t.lower() for t in s], warn=False) for s in sequences]
    return [vocab.encode(s, warn=False) for s in sequences]
