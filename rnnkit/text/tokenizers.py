"""Character-level and word-level tokenizers with one interface.

Both are fitted on a text (building a :class:`~rnnkit.text.vocab.Vocab`), then turn text into
``int64`` ids and ids back into text::

    >>> tok = CharTokenizer().fit("hello\\n")
    >>> tok.decode(tok.encode("hole\\n"))
    'hole\\n'
    >>> w = WordTokenizer().fit(" the cat\\n the dog\\n")
    >>> w.tokenize(" the cat\\n the dog\\n")
    ['the', 'cat', '<eos>', 'the', 'dog', '<eos>']
    >>> w.decode(w.encode("the cat\\n"))
    'the cat\\n'

Special tokens and their ids (the same ids at both levels where both have the token):

========  ====  ====
token     char  word
========  ====  ====
``<pad>``  0     0
``<unk>``  1     1
``<bos>``  2     2
``<eos>``  --    3
========  ====  ====

``<pad>`` pads batches of sequences of unequal length and ``<bos>`` starts generation; a language
model trained on a plain stream never sees either as a target.  So PTB, whose 10,000 word types
include ``<unk>`` and ``<eos>``, gives a word vocabulary of 10,002 entries.

Word level: the text is split into lines at ``"\\n"`` and each line on whitespace; every line,
empty ones included, ends with ``<eos>`` (exactly as PyTorch's ``word_language_model`` does), so
a final newline does not add an empty line.  Decoding joins words with single spaces and turns
``<eos>`` into a newline.  Char level: one token per character (newlines included); decoding
joins the characters.  Both drop ``<pad>`` and ``<bos>`` when decoding; an unknown character
decodes as U+FFFD, an unknown word as ``<unk>``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

import numpy as np

from ..errors import DataError
from .vocab import BOS, EOS, PAD, UNK, Vocab

UNKNOWN_CHAR = "\ufffd"


class _Tokenizer:
    level = ""
    specials: tuple[str, ...] = ()

    def __init__(self, vocab: Vocab | None = None):
        self._vocab = vocab

    @property
    def vocab(self) -> Vocab:
        if self._vocab is None:
            raise DataError(f"{type(self).__name__}: not fitted yet; call fit(text) first")
        return self._vocab

    def tokenize(self, text: str) -> list[str]:
        raise NotImplementedError

    def fit(self, text: str, min_count: int = 1, max_size: int | None = None):
        """Build the vocabulary from ``text``; see :meth:`Vocab.build`. Returns ``self``."""
        counts = Counter(self.tokenize(text))
        self._vocab = Vocab.build(counts, min_count, max_size, self.specials)
        return self

    def encode(self, text: str, warn: bool = True) -> np.ndarray:
        """The ids of ``text`` as an ``int64`` array ``(N,)``; unknown tokens become ``<unk>``."""
        return self.vocab.encode(self.tokenize(text), warn=warn, stacklevel=3)

    def decode(self, ids) -> str:
        raise NotImplementedError

    def to_dict(self) -> dict:
        return {"level": self.level, "vocab": self.vocab.to_dict()}

    @classmethod
    def from_dict(cls, d: Mapping):
        if not isinstance(d, Mapping) or set(d) != {"level", "vocab"}:
            raise DataError(f"{cls.__name__}.from_dict: expected a dict with keys level, vocab")
        if d["level"] != cls.level:
            raise DataError(
                f"{cls.__name__}.from_dict: expected level {cls.level!r}, got {d['level']!r}"
            )
        vocab = Vocab.from_dict(d["vocab"])
        if vocab.specials != cls.specials:
            raise DataError(
                f"{cls.__name__}.from_dict: expected specials {list(cls.specials)}, got "
                f"{list(vocab.specials)}"
            )
        return cls(vocab)

    def __repr__(self) -> str:
        size = "unfitted" if self._vocab is None else f"{len(self._vocab)} tokens"
        return f"{type(self).__name__}({size})"


class CharTokenizer(_Tokenizer):
    """One token per character; specials ``<pad>`` 0, ``<unk>`` 1, ``<bos>`` 2."""

    level = "char"
    specials = (PAD, UNK, BOS)

    def tokenize(self, text: str) -> list[str]:
        return list(text)

    def decode(self, ids) -> str:
        tokens = self.vocab.decode(ids)
        table = {PAD: "", BOS: "", UNK: UNKNOWN_CHAR}
        return "".join([table.get(t, t) for t in tokens])


class WordTokenizer(_Tokenizer):
    """Whitespace-separated words plus ``<eos>`` per line; ``<pad>`` 0, ``<unk>`` 1, ``<bos>`` 2,
    ``<eos>`` 3."""

    level = "word"
    specials = (PAD, UNK, BOS, EOS)

    def tokenize(self, text: str) -> list[str]:
        lines = text.split("\n")
        if lines[-1] == "":
            lines.pop()  # text ended with a newline (or was empty)
        out: list[str] = []
        for line in lines:
            out.extend(line.split())
            out.append(EOS)
        return out

    def decode(self, ids) -> str:
        parts: list[str] = []
        at_line_start = True
        for t in self.vocab.decode(ids):
            if t == EOS:
                parts.append("\n")
                at_line_start = True
            elif t not in (PAD, BOS):
                parts.append(t if at_line_start else " " + t)
                at_line_start = False
        return "".join(parts)


TOKENIZERS = {"char": CharTokenizer, "word": WordTokenizer}


def make_tokenizer(level: str) -> CharTokenizer | WordTokenizer:
    """An unfitted tokenizer of ``level`` ("char" or "word")."""
    if level not in TOKENIZERS:
        raise DataError(f"unknown tokenizer level {level!r}; expected one of {list(TOKENIZERS)}")
    return TOKENIZERS[level]()


def tokenizer_from_dict(d: Mapping) -> CharTokenizer | WordTokenizer:
    """Restore a tokenizer saved with ``to_dict()``, whatever its level."""
    if not isinstance(d, Mapping) or "level" not in d:
        raise DataError("tokenizer_from_dict: expected a dict with a 'level' key")
    if d["level"] not in TOKENIZERS:
        raise DataError(
            f"tokenizer_from_dict: unknown level {d['level']!r}; expected one of {list(TOKENIZERS)}"
        )
    return TOKENIZERS[d["level"]].from_dict(d)
