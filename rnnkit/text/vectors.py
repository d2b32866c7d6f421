"""Pre-trained word vectors (GloVe or word2vec text files) for the words of a vocabulary."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from ..errors import DataError
from .vocab import Vocab

__all__ = ["load_vectors"]


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def load_vectors(path, vocab: Vocab, *,  # noqa: C901 -- one pass, one message per bad line
                 encoding: str = "utf-8",
                 lowercase_fallback: bool = True) -> tuple[np.ndarray, np.ndarray, int]:
    """Pre-trained vectors for the words of ``vocab`` from a GloVe or word2vec text file.

    The file holds ``word v_1 ... v_D`` per line (``.gz`` works too); a first line of two
    integers (``N D``, word2vec's header) is skipped.  The vector is the last D fields, so a
    word containing spaces (GloVe 840B has a few) is read whole.  A vocabulary word without an
    exact match takes the vector of its lowercased form, if there is one.  Only the vectors of
    vocabulary words are kept in memory.

    Returns ``(vectors (N, D) float32, rows (N,), D)``: row ``rows[i]`` of the embedding gets
    ``vectors[i]``.  A line with the wrong number of fields or a field that is not a number
    raises :class:`DataError` naming the file and line; so does a vector of a vocabulary word
    holding nan, inf or a number float32 cannot hold.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    lower: dict[str, list[int]] = {}
    if lowercase_fallback:
        for i, t in enumerate(vocab.tokens):
            if t not in vocab.specials:
                lower.setdefault(t.lower(), []).append(i)
    exact: dict[int, np.ndarray] = {}
    folded: dict[int, np.ndarray] = {}
    D = None
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            for n, raw in enumerate(f, 1):
                try:
                    line = raw.decode(encoding).rstrip("\r\n")
                except UnicodeDecodeError as e:
                    raise DataError(f"{path}:{n}: cannot decode byte 0x{raw[e.start]:02x} as "
                                    f"{encoding}; pass --encoding") from None
                if not line.strip():
                    continue
                fields = line.rstrip().split(" ")
                if n == 1 and len(fields) == 2 and all(x.isdigit() for x in fields):
                    D = int(fields[1])
                    continue
                if D is None:
                    D = len(fields) - 1
                    if D < 1:
                        raise DataError(f"{path}:{n}: expected 'word v1 ... vD', got one field")
                if len(fields) < D + 1:
                    raise DataError(f"{path}:{n}: expected a word and {D} numbers, got "
                                    f"{len(fields)} fields")
                word = " ".join(fields[: len(fields) - D])
                rows = vocab.stoi.get(word)
                fold = lower.get(word) if lowercase_fallback else None
                if rows is None and not fold:
                    continue
                try:
                    vec = np.array(fields[len(fields) - D:], dtype=np.float64)
                except ValueError:
                    raise DataError(f"{path}:{n}: the vector of {word!r} holds a field that "
                                    "is not a number") from None
                if not (np.abs(vec) <= _FLOAT32_MAX).all():  # nan, inf, 1e40
                    raise DataError(f"{path}:{n}: the vector of {word!r} holds nan, inf or a "
                                    "number beyond float32's range (3.4e38); expected finite "
                                    "numbers")
                vec = vec.astype(np.float32)
                if rows is not None:
                    exact[rows] = vec
                for r in fold or ():
                    folded.setdefault(r, vec)
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DataError(f"{path}: cannot read ({e})") from None
    if D is None:
        raise DataError(f"{path}: no vectors found")
    found = {**folded, **exact}
    rows = np.array(sorted(found), dtype=np.int64)
    vectors = np.stack([found[r] for r in rows]) if len(rows) else np.zeros((0, D), np.float32)
    return vectors, rows, D
