"""Classification files: one labelled text per line.

Formats (:func:`read_classification`):

* ``tsv``:   ``label<TAB>text``
* ``space``: ``label text`` -- the first whitespace-separated field is the label (SST files)
* ``csv``:   a header row naming the columns; ``label_column`` and ``text_column`` pick them
* ``auto``:  ``.csv`` files are CSV, ``.tsv`` files TSV; otherwise TSV if the first non-blank
  line holds a tab, else ``space``

Text is split on whitespace (the files are expected to be tokenized already).  Blank lines are
skipped.  Every other problem -- a line without a label or without text, a missing column, an
undecodable byte, an empty file -- raises a one-line :class:`~rnnkit.errors.DataError` naming
the file and line.  With ``on_error="skip"`` the bad example is left out instead and one
:class:`~rnnkit.text.io.SkippedWarning` gives how many were skipped and where the first was.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError
from .io import LineProblems, excerpt, read_lines, read_text

__all__ = ["ClassificationData", "check_label_counts", "read_classification",
           "resolve_classification_format"]


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
    problems = LineProblems(path, on_error)
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
        for n, line in enumerate(read_lines(path, encoding), 1):
            if not line.strip():
                continue
            if fmt == "tsv":
                if "\t" not in line:
                    problems(n, f"expected 'label<TAB>text', found no tab in {excerpt(line)}")
                    continue
                label, text = line.split("\t", 1)
            else:
                parts = line.strip().split(None, 1)
                if len(parts) < 2:
                    problems(n, f"expected 'label text', found one field only: {excerpt(line)} "
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
    for line in read_lines(path, encoding):
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
