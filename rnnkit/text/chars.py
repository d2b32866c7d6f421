"""Characters of words for a character-level word encoder (the tagger's): each distinct word
form's character ids are stored once, and a batch holds each distinct form of it once."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from .batching import pad_batch
from .vocab import Vocab

__all__ = ["CharBatch", "CharTable"]


class CharBatch(NamedTuple):
    """Characters of the distinct words of a batch: ``ids`` (U, Lc) padded with 0,
    ``lengths`` (U,), and ``index`` (B, T): which distinct word sits at each position."""

    ids: np.ndarray
    lengths: np.ndarray
    index: np.ndarray


class CharTable:
    """Character ids of word forms, stored once per distinct form.

    ``add(words) -> form ids``; :meth:`batch` turns a padded (B, T) array of form ids into a
    :class:`CharBatch` holding each distinct form of the batch once.  Words longer than
    ``max_chars`` keep their first and last ``max_chars // 2`` characters (prefix and suffix
    carry the most about a word's tag).
    """

    def __init__(self, char_vocab: Vocab, max_chars: int = 20):
        self.vocab, self.max_chars = char_vocab, max_chars
        self.index: dict[str, int] = {}
        self.chars: list[np.ndarray] = []

    def _chars(self, word: str) -> np.ndarray:
        m = self.max_chars
        if len(word) > m:
            word = word[: m // 2] + word[len(word) - (m - m // 2):]
        return self.vocab.encode(list(word), warn=False)

    def add(self, words: Sequence[str]) -> np.ndarray:
        out = np.empty(len(words), np.int64)
        for i, w in enumerate(words):
            k = self.index.get(w)
            if k is None:
                k = self.index[w] = len(self.chars)
                self.chars.append(self._chars(w))
            out[i] = k
        return out

    def batch(self, forms: np.ndarray, lengths: np.ndarray) -> CharBatch:
        """``forms`` (B, T) form ids (anything at padded steps), ``lengths`` (B,)."""
        B, T = forms.shape
        real = np.arange(T)[None, :] < lengths[:, None]  # (B, T)
        uniq, inverse = np.unique(forms[real], return_inverse=True)
        ids, char_lengths = pad_batch([self.chars[k] for k in uniq])  # (U, Lc)
        index = np.zeros((B, T), np.int64)
        index[real] = inverse
        return CharBatch(ids, char_lengths, index)
