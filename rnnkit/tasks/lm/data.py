"""The text a language model (recurrent or n-gram) trains on: a file, a directory, a registry
data set or the built-in corpus, split into train/valid/test by one set of rules."""

from __future__ import annotations

import hashlib
from pathlib import Path

BUILTIN = "builtin:python-stdlib"
BUILTIN_VALID = 0.025  # the last ~100,000 characters: validation stays a few seconds
DEFAULT_VALID = 0.1


def load_texts(data=None, *, level: str | None = None, encoding: str = "utf-8",
               valid_fraction: float | None = None) -> tuple[dict, str, dict]:
    """``(texts, level, info)``: ``{"train", "valid", "test"}`` texts, the tokenizer level (the
    data set's own unless ``level`` is given; else characters) and the data options to save.

    ``data`` is a text file, ``.gz`` file, directory or registry name (``None``: the built-in
    corpus, Python standard-library source); a single text is split at its last
    ``valid_fraction`` (default 0.1; 0.025 for the built-in corpus)."""
    from ...errors import DataError
    from ...text.datasets import DATASETS, load_corpus
    from ...text.io import default_corpus, split_fraction

    if data is None:
        frac = BUILTIN_VALID if valid_fraction is None else valid_fraction
        texts = split_fraction(default_corpus(), 1 - frac, frac, at_lines=True)
        level = level or "char"
        source = BUILTIN
    else:
        frac = DEFAULT_VALID if valid_fraction is None else valid_fraction
        if not 0 <= frac < 1:
            raise DataError(f"--valid-fraction must be in [0, 1), got {frac}")
        known = DATASETS.get(data)
        level = level or (known.level if known is not None else "char")
        texts = load_corpus(data, encoding, fractions=(1 - frac, frac, 0.0),
                            at_lines=level == "word")
        # a path is saved absolute, so a run resumes from any working directory
        source = str(data) if known is not None else str(Path(data).resolve())
    info = {"source": source, "level": level, "encoding": encoding, "valid_fraction": frac,
            "fingerprint": fingerprint(texts)}
    return texts, level, info


def fingerprint(texts: dict) -> dict:
    """``{"chars": n, "sha256": hex}`` of the train, valid and test texts: what a resumed run
    checks its data against.

    >>> fingerprint({"train": "ab", "valid": None})["chars"]
    2
    """
    h, n = hashlib.sha256(), 0
    for name in ("train", "valid", "test"):
        text = texts.get(name) or ""
        h.update(text.encode("utf-8", "surrogatepass"))
        h.update(b"\0")
        n += len(text)
    return {"chars": n, "sha256": h.hexdigest()}


def check_fingerprint(saved, texts: dict, source: str, accept: bool, warn) -> None:
    """A resumed run's data must be what it started on: a different text raises
    :class:`~rnnkit.errors.DataError`, or with ``accept`` (``--accept-changed-data``) gives a
    warning.  Runs saved without a fingerprint are not checked."""
    from ...errors import DataError

    if not isinstance(saved, dict):
        return
    now = fingerprint(texts)
    if (saved.get("chars"), saved.get("sha256")) == (now["chars"], now["sha256"]):
        return
    message = (f"{source}: the data differs from the data the run started on "
               f"({saved.get('chars')} characters then, {now['chars']} now, another sha256)")
    if not accept:
        raise DataError(f"--resume: {message}; pass --accept-changed-data to continue on it")
    warn(f"{message}; continuing on it (--accept-changed-data)")
