"""Tagging files: one sentence per block, one word and its tag per line.

Formats (:func:`read_tagged`):

* ``conllu``: CoNLL-U; the tag is UPOS (column 4) or, with ``column="xpos"``, XPOS (column 5).
  Comment lines (``#``), multi-word token ranges (ID ``1-2``) and empty nodes (ID ``1.1``) are
  skipped, as the CoNLL-U specification intends for word-level tasks.
* ``wordtag``: ``word tag`` per line (whitespace-separated; with more fields, the first is the
  word and the last the tag, as in CoNLL-2003), a blank line between sentences; ``-DOCSTART-``
  lines are skipped.
* ``auto``: ``.conllu`` files (also ``.conllu.gz``) are CoNLL-U; otherwise CoNLL-U if the first
  token line has 10 tab-separated columns and a numeric ID, else ``wordtag``.

Every problem -- a line without a tag, a tag ``_``, an undecodable byte, an empty file --
raises a one-line :class:`~rnnkit.errors.DataError` naming the file and line.  With
``on_error="skip"`` the bad sentence is left out instead and one
:class:`~rnnkit.text.io.SkippedWarning` gives how many were skipped and where the first was.
An empty sentence (a CoNLL-U block of comments only) is always skipped with a warning.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError
from .io import LineProblems, SkippedWarning, excerpt, read_lines

__all__ = ["TaggedData", "is_bio", "read_tagged", "resolve_tagged_format"]


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


_CONLLU_COLUMNS = {"upos": 3, "xpos": 4}


def read_tagged(path, fmt: str = "auto", *,  # noqa: C901 -- one pass over both line formats
                column: str = "upos", encoding: str = "utf-8",
                tags: Sequence[str] | None = None, on_error: str = "raise") -> TaggedData:
    """Read a CoNLL-U or ``word tag`` file (formats: see the module docstring).

    ``tags``: the tags a model knows (at evaluation time); any other tag is an error naming the
    file and line (or its sentence is skipped, with ``on_error="skip"``).
    """
    path = Path(path)
    fmt = resolve_tagged_format(path, fmt, encoding)
    if column not in _CONLLU_COLUMNS:
        raise DataError(f"tag column must be 'upos' or 'xpos', got {column!r}")
    problems = LineProblems(path, on_error)
    data = TaggedData([], [], [], str(path))
    known = None if tags is None else set(tags)
    col = _CONLLU_COLUMNS[column]
    words: list[str] = []
    labels: list[str] = []
    start, bad, block = 0, False, False
    width: tuple[int, int] | None = None  # (columns, first line) of this sentence

    def flush() -> None:
        nonlocal words, labels, bad, block, width
        width = None  # every line of a sentence has as many columns as its first
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

    for n, line in enumerate(read_lines(path, encoding), 1):
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
                problem(n, f"expected 'word tag', found one field only: {excerpt(line)}")
                continue
            if width is None:
                width = (len(fields), n)
            elif len(fields) != width[0]:
                problem(n, f"expected {width[0]} columns like line {width[1]}, found "
                           f"{len(fields)}: {excerpt(line)}")
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
    for line in read_lines(path, encoding):
        if line.strip() and not line.startswith("#"):
            cols = line.split("\t")
            return "conllu" if len(cols) == 10 and re.match(r"\d", cols[0]) else "wordtag"
    return "wordtag"


def is_bio(tags: Sequence[str]) -> bool:
    """Whether a tag set is BIO/IOB/BIOES: every tag ``O`` or ``B-``, ``I-``, ``E-``, ``S-``
    followed by a type, and at least one such prefixed tag."""
    pattern = re.compile(r"[BIES]-.+")
    return any(t != "O" for t in tags) and all(t == "O" or pattern.fullmatch(t) for t in tags)
