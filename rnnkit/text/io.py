"""Reading text files, splitting a text by fraction, the built-in default corpus, and the
line-by-line reading with bad-line reporting that the labelled-data readers share.

:func:`read_text` reads a file, a ``.gz`` file or a whole directory and turns every way a file
can be unusable into a one-line :class:`~rnnkit.errors.DataError` that names the file.  Like
``open(path, encoding=...).read()`` it turns ``\\r\\n`` and lone ``\\r`` into ``\\n``; it also
drops a UTF-8 byte-order mark.
"""

from __future__ import annotations

import codecs
import gzip
import sysconfig
import warnings
import zlib
from pathlib import Path

from ..errors import DataError


def read_text(path: str | Path, encoding: str = "utf-8") -> str:
    """The text of a file, a gzip file (name ending in ``.gz``) or a directory.

    A directory is read recursively: every regular file inside, in sorted path order, joined
    with one ``"\\n"`` between files.  Hidden files and folders (names starting with ``.``) and
    empty files inside the directory are skipped.
    """
    path = Path(path)
    _check_encoding(encoding)
    if not path.exists():
        raise DataError(f"{path}: no such file or directory")
    if not path.is_dir():
        return _read_file(path, encoding)
    files = sorted(
        p
        for p in path.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
    )
    texts = [_read_file(p, encoding, allow_empty=True) for p in files]
    texts = [t for t in texts if t]
    if not texts:
        raise DataError(f"{path}: directory holds no non-empty files")
    return "\n".join(texts)


def _check_encoding(encoding: str) -> None:
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise DataError(f"unknown text encoding {encoding!r}") from None


def _read_file(path: Path, encoding: str, allow_empty: bool = False) -> str:
    gz = path.suffix == ".gz"
    try:
        if gz:
            with gzip.open(path, "rb") as f:
                data = f.read()
        else:
            data = path.read_bytes()
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise DataError(f"{path}: corrupt or truncated gzip file ({e})") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read: {e.strerror or e}") from None
    if not data:
        if allow_empty:
            return ""
        raise DataError(f"{path}: file is empty" + (" after decompression" if gz else ""))
    where = " of the decompressed text" if gz else ""
    if not codecs.lookup(encoding).name.startswith(("utf-16", "utf-32")):
        nul = data.find(b"\x00")
        if nul >= 0:
            raise DataError(
                f"{path}: looks like binary data, not text (NUL byte at offset {nul}{where})"
            )
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise DataError(
            f"{path}: cannot decode byte 0x{data[e.start]:02x} at offset {e.start}{where} "
            f"(line {line}) as {encoding}; pass --encoding with the file's encoding "
            "(for example --encoding latin-1)"
        ) from None
    text = text.removeprefix("\ufeff")
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


def split_fraction(
    text: str,
    train: float = 0.9,
    valid: float = 0.1,
    test: float = 0.0,
    *,
    at_lines: bool = False,
) -> dict[str, str | None]:
    """Split ``text`` by characters into consecutive train, valid and test parts.

    The fractions must sum to 1.  With ``n = len(text)`` the train part is
    ``text[:int(n * train)]`` and the last part runs to the end, so the default is nanoGPT's
    split (first 90% of the characters for training, the last 10% for validation).
    ``at_lines=True`` moves each cut forward to just after the next newline, so no line (or
    word) is cut in two; where no newline follows, to just after the next whitespace.
    ``test`` is ``None`` in the result when its fraction is 0.
    """
    fractions = (train, valid, test)
    if any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-9 or train == 0:
        raise DataError(
            "split_fraction: expected train > 0, valid >= 0, test >= 0 summing to 1, got "
            f"{train}, {valid}, {test}"
        )
    n = len(text)
    cut1 = int(n * train)
    cut2 = n if test == 0 else int(n * (train + valid))
    if at_lines:
        lined = [_after_newline(text, c) for c in (cut1, cut2)]
        # one long line: cut after the next whitespace instead, so no word is cut in two
        cut1, cut2 = (c if c < n or test == 0 and i == 1 else _after_space(text, raw)
                      for i, (c, raw) in enumerate(zip(lined, (cut1, cut2))))
    parts = {"train": text[:cut1], "valid": text[cut1:cut2], "test": text[cut2:]}
    for name, f in zip(parts, fractions):
        if f > 0 and not parts[name]:
            raise DataError(
                f"split_fraction: text of {n} characters is too short to give a non-empty "
                f"{name} part ({f:g} of it)"
            )
    if test == 0:
        parts["test"] = None
    return parts


def _after_space(text: str, cut: int) -> int:
    if cut == 0 or cut >= len(text) or text[cut - 1].isspace():
        return cut
    for i in range(cut, len(text)):
        if text[i].isspace():
            return i + 1
    return len(text)


def _after_newline(text: str, cut: int) -> int:
    if cut == 0 or cut >= len(text) or text[cut - 1] == "\n":
        return cut
    i = text.find("\n", cut)
    return len(text) if i < 0 else i + 1


# Public top-level modules of the standard library that exist in every CPython from 3.10 on
# (modules removed in 3.12 and 3.13 are left out).  Together about 3.9 MB of Python source on
# CPython 3.11; the size differs a little between Python versions.  A module that has become a
# package is read from its ``__init__.py``; one that is missing is skipped.
_STDLIB_NAMES = """
        abc argparse ast base64 bdb bisect bz2 cProfile calendar cmd code codecs codeop colorsys
        compileall configparser contextlib contextvars copy copyreg csv dataclasses datetime
        decimal difflib dis doctest enum filecmp fileinput fnmatch fractions ftplib functools
        genericpath getopt getpass gettext glob graphlib gzip hashlib heapq hmac imaplib inspect
        io ipaddress keyword linecache locale lzma mailbox mimetypes modulefinder netrc ntpath
        nturl2path numbers opcode operator optparse os pathlib pdb pickle pickletools pkgutil
        platform plistlib poplib posixpath pprint profile pstats pty py_compile pyclbr pydoc queue
        quopri random reprlib rlcompleter runpy sched secrets selectors shelve shlex shutil signal
        site smtplib socket socketserver ssl stat statistics string stringprep struct subprocess
        symtable sysconfig tabnanny tarfile tempfile textwrap threading timeit token tokenize
        trace traceback tracemalloc tty turtle types typing uuid warnings wave weakref webbrowser
        zipapp zipfile zipimport
"""
STDLIB_MODULES: tuple[str, ...] = tuple(sorted(_STDLIB_NAMES.split()))


def default_corpus() -> str:
    """The built-in corpus: this Python's own standard-library source, a few MB of text.

    The files of :data:`STDLIB_MODULES` (top-level modules only, so no tests and no
    site-packages) are read from ``sysconfig.get_paths()["stdlib"]`` in that sorted order and
    joined with a newline, so the result is the same on every run with the same Python.
    """
    root = Path(sysconfig.get_paths()["stdlib"])
    texts = []
    for name in STDLIB_MODULES:
        for path in (root / f"{name}.py", root / name / "__init__.py"):
            if path.is_file():
                texts.append(_read_file(path, "utf-8", allow_empty=True))
                break
    if len(texts) < len(STDLIB_MODULES) // 2:
        raise DataError(
            f"default corpus: found only {len(texts)} of {len(STDLIB_MODULES)} standard-library "
            f"source files under {root}; this Python ships without its sources, so pass a "
            "data set or a text file instead"
        )
    return "\n".join(texts)


# -- reading line by line, reporting bad lines ----------------------------------------------


class SkippedWarning(UserWarning):
    """Some examples or sentences were left out of a file (bad lines with ``on_error="skip"``,
    or empty sentences)."""


class LineProblems:
    """Bad lines of one file: raise at the first (``on_error="raise"``) or (``"skip"``) count
    them and warn once at the end with a :class:`SkippedWarning`."""

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


def read_lines(path, encoding: str = "utf-8") -> list[str]:
    """The lines of a file read with :func:`read_text` (no line endings)."""
    return read_text(path, encoding).split("\n")


def excerpt(line: str, n: int = 40) -> str:
    """``repr`` of ``line``, cut after ``n`` characters, for an error message."""
    return repr(line if len(line) <= n else line[:n] + "...")


def iter_lines(source, encoding: str = "utf-8"):
    """``(line number, line)`` of a file (``.gz`` too) or, for ``"-"``, of standard input, one
    at a time as they arrive, without the line ending.  A byte that does not decode raises
    :class:`DataError` naming the file (``<stdin>``) and line."""
    import sys

    if str(source) == "-":
        name, f, close = "<stdin>", sys.stdin.buffer, False
    else:
        path = Path(source)
        if path.is_dir():
            raise DataError(f"{path}: is a directory; expected a text file")
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
