"""Property-based tests of every reader: random bytes, a random truncation or one changed byte
give either the documented error (DataError for data files, CheckpointError for checkpoints)
or a correct result, never another exception."""

from __future__ import annotations

import gzip
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from rnnkit.errors import CheckpointError, DataError  # noqa: E402
from rnnkit.tasks.seq2seq.data import read_pairs  # noqa: E402
from rnnkit.text.classification import read_classification  # noqa: E402
from rnnkit.text.io import read_text  # noqa: E402
from rnnkit.text.tagged import read_tagged  # noqa: E402
from rnnkit.text.vectors import load_vectors  # noqa: E402
from rnnkit.text.vocab import Vocab  # noqa: E402
from rnnkit.train.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402

FUZZ = settings(max_examples=30, deadline=None, derandomize=True,
                suppress_health_check=list(HealthCheck))

SEEDS = {
    "text.txt": "the quick brown fox\njumps over the lazy dog\n".encode(),
    "labels.tsv": b"pos\tgood film\nneg\tbad film\npos\tfine one\n",
    "labels.csv": b"label,text\npos,good film\nneg,\"bad, very\"\n",
    "tags.txt": b"the DET\ndog NOUN\n\na DET\ncat NOUN\n",
    "tags.conllu": (b"# text = the dog\n1\tthe\tthe\tDET\tDT\t_\t2\tdet\t_\t_\n"
                    b"2\tdog\tdog\tNOUN\tNN\t_\t0\troot\t_\t_\n\n"),
    "pairs.tsv": b"a b\tc d\ne f\tg h\n",
    "vectors.txt": b"2 3\nthe 0.1 0.2 0.3\ndog -1 0 1e-3\n",
}


def _mutations(seed: bytes):
    """Random bytes, a truncation of ``seed``, or ``seed`` with one byte changed."""
    n = len(seed)
    return st.one_of(
        st.binary(max_size=200),
        st.integers(0, n).map(lambda k: seed[:k]),
        st.tuples(st.integers(0, n - 1), st.integers(0, 255)).map(
            lambda t: seed[:t[0]] + bytes([t[1]]) + seed[t[0] + 1:]),
    )


def _read(name: str, data: bytes, reader):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / name
        p.write_bytes(data)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                return reader(p)
            except DataError as e:
                assert "\n" not in str(e)
                return None


@FUZZ
@given(_mutations(SEEDS["text.txt"]))
def test_plain_text(data):
    text = _read("text.txt", data, read_text)
    if text is not None:
        assert isinstance(text, str) and text


@FUZZ
@given(_mutations(SEEDS["text.txt"]))
def test_gzipped_text(data):
    # a changed byte inside a .gz file: a decompression error must be a DataError too
    blob = gzip.compress(SEEDS["text.txt"])
    if data and len(data) < len(blob):
        blob = blob[:len(data)] + blob[len(data) + 1:] if len(data) % 2 else blob[:len(data)]
    _read("text.txt.gz", blob, read_text)


@FUZZ
@given(_mutations(SEEDS["labels.tsv"]))
def test_labelled_tsv(data):
    out = _read("labels.tsv", data, read_classification)
    if out is not None:
        assert len(out.texts) == len(out.labels)


@FUZZ
@given(_mutations(SEEDS["labels.csv"]))
def test_labelled_csv(data):
    out = _read("labels.csv", data, read_classification)
    if out is not None:
        assert len(out.texts) == len(out.labels)


@FUZZ
@given(_mutations(SEEDS["tags.txt"]))
def test_word_tag_file(data):
    out = _read("tags.txt", data, read_tagged)
    if out is not None:
        assert all(len(w) == len(t) for w, t in zip(out.sentences, out.tags))


@FUZZ
@given(_mutations(SEEDS["tags.conllu"]))
def test_conllu(data):
    out = _read("tags.conllu", data, read_tagged)
    if out is not None:
        assert all(len(w) == len(t) for w, t in zip(out.sentences, out.tags))


@FUZZ
@given(_mutations(SEEDS["pairs.tsv"]))
def test_pairs(data):
    out = _read("pairs.tsv", data, read_pairs)
    if out is not None:
        assert all(len(p) == 2 and all(isinstance(s, str) for s in p) for p in out)


@FUZZ
@given(_mutations(SEEDS["vectors.txt"]))
def test_vectors(data):
    vocab = Vocab(["the", "dog", "cat"])
    out = _read("vectors.txt", data, lambda p: load_vectors(p, vocab))
    if out is not None:
        assert np.isfinite(out[0]).all()


_CHECKPOINT = {}


def _checkpoint_files() -> dict[str, bytes]:
    if not _CHECKPOINT:
        with tempfile.TemporaryDirectory() as d:
            p = save_checkpoint(Path(d) / "ck", kind="lm", config={"model": {"H": 2}},
                                weights={"W_h": np.eye(2), "b": np.zeros(3, np.float32)},
                                vocab={"tokens": ["a", "b"]}, train_meta={"step": 3},
                                train_arrays={"opt.m": np.ones(2)})
            _CHECKPOINT.update({f.name: f.read_bytes() for f in p.iterdir()})
    return _CHECKPOINT


@FUZZ
@given(st.sampled_from(["manifest.json", "config.json", "weights.npz", "vocab.json",
                        "train_state.json", "train_state.npz"]), st.data())
def test_checkpoint(name, data):
    files = _checkpoint_files()
    mutated = data.draw(_mutations(files[name]))
    with tempfile.TemporaryDirectory() as d:
        ck = Path(d) / "ck"
        ck.mkdir()
        for n, b in files.items():
            (ck / n).write_bytes(mutated if n == name else b)
        try:
            loaded = load_checkpoint(ck)
        except CheckpointError as e:
            assert "\n" not in str(e)
            return
        np.testing.assert_array_equal(loaded.weights["W_h"], np.eye(2))
        assert loaded.train_meta == {"step": 3}
