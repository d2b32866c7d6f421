"""Labelled text: readers for classification and tagging files, word vectors, padded batches.

Classification files (:func:`read_classification`), one example per line:

* ``tsv``:   ``label<TAB>text``
* ``space``: ``label text`` -- the first whitespace-separated field is the label (SST files)
* ``csv``:   a header row naming the columns; ``label_column`` and ``text_column`` pick them
* ``auto``:  ``.csv`` files are CSV, ``.tsv`` files TSV; otherwise TSV if the first non-blank
  line holds a tab, else ``space``

Tagging files (:func:`read_tagged`), one sentence per block:

* ``conllu``: CoNLL-U; the tag is UPOS (column 4) or, with ``column="xpos"``, XPOS (column 5).
  Comment lines (``#``), multi-word token ranges (ID ``1-2``) and empty nodes (ID ``1.1``) are
  skipped, as the CoNLL-U specification intends for word-level tasks.
* ``wordtag``: ``word tag`` per line (whitespace-separated; with more fields, the first is the
  word and the last the tag, as in CoNLL-2003), a blank line between sentences; ``-DOCSTART-``
  lines are skipped.
* ``auto``: ``.conllu`` files (also ``.conllu.gz``) are CoNLL-U; otherwise CoNLL-U if the first
  token line has 10 tab-separated columns and a numeric ID, else ``wordtag``.

Text is split on whitespace (the files are expected to be tokenized already).  Blank lines in
classification files are skipped.  Every other problem -- a line without a label or without
text, a missing column, a tag ``_``, an undecodable byte, an empty file -- raises a one-line
:class:`~rnnkit.errors.DataError` naming the file and line.  With ``on_error="skip"`` the bad
example (or sentence) is left out instead and one :class:`SkippedWarning` gives how many were
skipped and where the first was.  An empty sentence (a CoNLL-U block of comments only) is
always skipped with a warning.

Batches of these examples: :mod:`rnnkit.text.batching`.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..errors import DataError
from .batching import pad_batch
from .io import read_text
from .vocab import PAD, UNK, Vocab


class SkippedWarning(UserWarning):
    """Some examples or sentences were left out of a file (bad lines with ``on_error="skip"``,
    or empty sentences)."""


# -- data containers ------------------------------------------------------------------------


@dataclass
class ClassificationData:
    """``texts[i]`` (list of tokens) has label ``labels[i]``, read from line ``lines[i]``."""

    texts: list[list[str]]
    labels: list[str]
    lines: list[int]
    source: str = ""
    skipped: int = 0

    def __len__(self) -> int:
        return len(self.texts)


@dataclass
class TaggedData:
    """``sentences[i]`` (list of words) has tags ``tags[i]`` (same length); it starts at line
    ``lines[i]``."""

    sentences: list[list[str]]
    tags: list[list[str]]
    lines: list[int]
    source: str = ""
    skipped: int = 0
    empty: int = field(default=0)

    def __len__(self) -> int:
        return len(self.sentences)


class _Problems:
    """Raise at the first bad line, or (``skip``) count them and warn once at the end."""

    def __init__(self, path, on_error: str):
        if on_error not in ("raise", "skip"):
            raise DataError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        self.path, self.on_error = path, on_error
        self.count, self.first = 0, None

    def __call__(self, line: int, message: str) -> None:
        if self.on_error == "raise":
            raise DataError(f"{self.path}:{line}: {message}")
        self.count += 1
        if self.first is None:
            self.first = f"line {line}: {message}"

    def warn(self, what: str) -> None:
        if self.count:
            warnings.warn(f"{self.path}: skipped {self.count} bad {what} (first at "
                          f"{self.first})", SkippedWarning, stacklevel=3)


def _lines(path, encoding: str) -> list[str]:
    return read_text(path, encoding).split("\n")


# -- classification ------------------------------------------------------------------------


def read_classification(path, fmt: str = "auto", *, encoding: str = "utf-8",
                        label_column: str = "label", text_column: str = "text",
                        lowercase: bool = False, labels: Sequence[str] | None = None,
                        on_error: str = "raise") -> ClassificationData:
    """Read a classification file (see the module docstring for the formats).

    ``labels``: the labels a model knows (at evaluation time); a line with any other label is
    an error naming the file and line (or skipped, with ``on_error="skip"``).
    """
    path = Path(path)
    fmt = resolve_classification_format(path, fmt, encoding)
    problems = _Problems(path, on_error)
    data = ClassificationData([], [], [], str(path))
    known = None if labels is None else set(labels)

    def add(n: int, label: str, text: str) -> None:
        label = label.strip()
        tokens = (text.lower() if lowercase else text).split()
        if not label:
            return problems(n, "no label")
        if not tokens:
            return problems(n, f"label {label!r} but no text")
        if known is not None and label not in known:
            shown = ", ".join(repr(x) for x in sorted(known)[:10])
            return problems(n, f"label {label!r} was never seen in training (known: {shown})")
        data.texts.append(tokens)
        data.labels.append(label)
        data.lines.append(n)

    if fmt == "csv":
        _read_csv(path, encoding, label_column, text_column, add)
    else:
        for n, line in enumerate(_lines(path, encoding), 1):
            if not line.strip():
                continue
            if fmt == "tsv":
                if "\t" not in line:
                    problems(n, f"expected 'label<TAB>text', found no tab in {_short(line)}")
                    continue
                label, text = line.split("\t", 1)
            else:
                parts = line.strip().split(None, 1)
                if len(parts) < 2:
                    problems(n, f"expected 'label text', found one field only: {_short(line)} "
                                "(a line without a label, or without text)")
                    continue
                label, text = parts
            add(n, label, text)
    problems.warn("lines")
    data.skipped = problems.count
    if not data.texts:
        raise DataError(f"{path}: no examples found")
    return data


def resolve_classification_format(path: Path, fmt: str, encoding: str = "utf-8") -> str:
    if fmt not in ("auto", "tsv", "space", "csv"):
        raise DataError(f"format must be auto, tsv, space or csv, got {fmt!r}")
    if fmt != "auto":
        return fmt
    suffixes = [s.lower() for s in path.suffixes if s.lower() != ".gz"]
    if suffixes and suffixes[-1] == ".csv":
        return "csv"
    if suffixes and suffixes[-1] == ".tsv":
        return "tsv"
    for line in _lines(path, encoding):
        if line.strip():
            return "tsv" if "\t" in line else "space"
    return "space"


def _read_csv(path: Path, encoding: str, label_column: str, text_column: str, add) -> None:
    reader = csv.reader(io.StringIO(read_text(path, encoding)))
    try:
        header = next(reader)
    except StopIteration:
        raise DataError(f"{path}: empty CSV file") from None
    except csv.Error as e:
        raise DataError(f"{path}:1: malformed CSV ({e})") from None
    header = [h.strip() for h in header]
    for name, what in ((label_column, "label"), (text_column, "text")):
        if name not in header:
            raise DataError(f"{path}:1: no {what} column {name!r} in the CSV header (columns: "
                            f"{', '.join(repr(h) for h in header)}); pass --{what}-column")
    li, ti = header.index(label_column), header.index(text_column)
    try:
        for row in reader:
            n = reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            if len(row) <= max(li, ti):
                add(n, "", "") if len(row) <= li else add(n, row[li], "")
                continue
            add(n, row[li], row[ti])
    except csv.Error as e:
        raise DataError(f"{path}:{reader.line_num}: malformed CSV ({e})") from None


def _short(line: str, n: int = 40) -> str:
    return repr(line if len(line) <= n else line[:n] + "...")


def check_label_counts(data: ClassificationData, min_count: int = 2) -> None:
    """Refuse labels seen fewer than ``min_count`` times in training data.

    In the ``label text`` format a line that lacks its label turns its first word into a label
    of its own; such a label almost always occurs once, so it is caught here instead of
    silently becoming a class.
    """
    counts = Counter(data.labels)
    rare = [lab for lab, c in counts.items() if c < min_count]
    if rare:
        lab = rare[0]
        line = data.lines[data.labels.index(lab)]
        more = f" ({len(rare)} such labels)" if len(rare) > 1 else ""
        raise DataError(f"{data.source}:{line}: label {lab!r} occurs only {counts[lab]} "
                        f"time(s){more}; is the label missing on that line?  Pass "
                        f"--min-label-count 1 to accept rare labels")


# -- tagging ----------------------------------------------------------------------------------

_CONLLU_COLUMNS = {"upos": 3, "xpos": 4}


def read_tagged(path, fmt: str = "auto", *,  # noqa: C901 -- one pass over both line formats
                column: str = "upos", encoding: str = "utf-8",
                tags: Sequence[str] | None = None, on_error: str = "raise") -> TaggedData:
    """Read a CoNLL-U or ``word tag`` file (see the module docstring).

    ``tags``: the tags a model knows (at evaluation time); any other tag is an error naming the
    file and line (or its sentence is skipped, with ``on_error="skip"``).
    """
    path = Path(path)
    fmt = resolve_tagged_format(path, fmt, encoding)
    if column not in _CONLLU_COLUMNS:
        raise DataError(f"tag column must be 'upos' or 'xpos', got {column!r}")
    problems = _Problems(path, on_error)
    data = TaggedData([], [], [], str(path))
    known = None if tags is None else set(tags)
    col = _CONLLU_COLUMNS[column]
    words: list[str] = []
    labels: list[str] = []
    start, bad, block = 0, False, False

    def flush() -> None:
        nonlocal words, labels, bad, block
        if block and not bad:
            if words:
                data.sentences.append(words)
                data.tags.append(labels)
                data.lines.append(start)
            else:
                data.empty += 1
        words, labels, bad, block = [], [], False, False

    def problem(n: int, message: str) -> None:
        nonlocal bad
        if not bad:
            problems(n, message)
        bad = True

    for n, line in enumerate(_lines(path, encoding), 1):
        if not line.strip():
            flush()
            continue
        if not block:
            block, start = True, n
        if fmt == "conllu":
            if line.startswith("#"):
                continue
            cols = line.split("\t")
            if len(cols) != 10:
                problem(n, f"expected 10 tab-separated columns (CoNLL-U), got {len(cols)}")
                continue
            ident = cols[0]
            if "-" in ident or "." in ident:
                continue  # multi-word token range or empty node
            if not ident.isdigit():
                problem(n, f"token ID {ident!r} is not a number")
                continue
            word, tag = cols[1], cols[col]
            if not word or word.isspace():
                problem(n, "empty FORM column")
                continue
            if tag in ("", "_"):
                problem(n, f"no {column.upper()} tag (column {col + 1} is {tag!r})")
                continue
        else:
            fields = line.split()
            if fields[0] == "-DOCSTART-":
                block = False  # a document marker, not an (empty) sentence
                continue
            if len(fields) < 2:
                problem(n, f"expected 'word tag', found one field only: {_short(line)}")
                continue
            word, tag = fields[0], fields[-1]
        if known is not None and tag not in known:
            problem(n, f"tag {tag!r} was never seen in training")
            continue
        words.append(word)
        labels.append(tag)
    flush()
    problems.warn("sentences")
    data.skipped = problems.count
    if data.empty:
        warnings.warn(f"{path}: skipped {data.empty} empty sentence(s) (no tokens)",
                      SkippedWarning, stacklevel=2)
    if not data.sentences:
        raise DataError(f"{path}: no sentences found")
    return data


def resolve_tagged_format(path: Path, fmt: str, encoding: str = "utf-8") -> str:
    if fmt not in ("auto", "conllu", "wordtag"):
        raise DataError(f"format must be auto, conllu or wordtag, got {fmt!r}")
    if fmt != "auto":
        return fmt
    suffixes = [s.lower() for s in path.suffixes if s.lower() != ".gz"]
    if suffixes and suffixes[-1] == ".conllu":
        return "conllu"
    for line in _lines(path, encoding):
        if line.strip() and not line.startswith("#"):
            cols = line.split("\t")
            return "conllu" if len(cols) == 10 and re.match(r"\d", cols[0]) else "wordtag"
    return "wordtag"


def is_bio(tags: Sequence[str]) -> bool:
    """Whether a tag set is BIO/IOB/BIOES: every tag ``O`` or ``B-``, ``I-``, ``E-``, ``S-``
    followed by a type, and at least one such prefixed tag."""
    pattern = re.compile(r"[BIES]-.+")
    return any(t != "O" for t in tags) and all(t == "O" or pattern.fullmatch(t) for t in tags)


# -- vocabularies ----------------------------------------------------------------------------


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


# -- characters of words ------------------------------------------------------------------


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


# -- pre-trained word vectors -------------------------------------------------------------


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
    raises :class:`DataError` naming the file and line.
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
                    vec = np.array(fields[len(fields) - D:], dtype=np.float32)
                except ValueError:
                    raise DataError(f"{path}:{n}: the vector of {word!r} holds a field that "
                                    "is not a number") from None
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


# -- streaming input ------------------------------------------------------------------------


def iter_lines(source, encoding: str = "utf-8"):
    """``(line number, line)`` of a file (``.gz`` too) or, for ``"-"``, of standard input, one
    at a time as they arrive, without the line ending.  A byte that does not decode raises
    :class:`DataError` naming the file (``<stdin>``) and line."""
    import sys

    if str(source) == "-":
        name, f, close = "<stdin>", sys.stdin.buffer, False
    else:
        path = Path(source)
        if not path.is_file():
            raise DataError(f"{path}: no such file")
        name, close = str(path), True
        f = gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")  # noqa: SIM115
    try:
        for n, raw in enumerate(f, 1):
            try:
                line = raw.decode(encoding)
            except UnicodeDecodeError as e:
                raise DataError(f"{name}:{n}: cannot decode byte 0x{raw[e.start]:02x} as "
                                f"{encoding}; pass --encoding with the input's encoding") from None
            if n == 1:
                line = line.removeprefix("\ufeff")
            yield n, line.rstrip("\r\n")
    finally:
        if close:
            f.close()
