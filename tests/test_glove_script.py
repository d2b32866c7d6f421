"""benchmarks/glove_vectors.py: the GloVe text it writes reads back through --vectors, a wheel
with the wrong checksum is refused, and an interrupted write leaves no file."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from rnnkit.text.vectors import load_vectors
from rnnkit.text.vocab import Vocab

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "glove_vectors.py"


@pytest.fixture(scope="module")
def glove():
    spec = importlib.util.spec_from_file_location("glove_vectors", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_written_file_reads_back_as_vectors(glove, tmp_path):
    words = ["the", ",", "film", "n't"]
    vectors = np.random.default_rng(0).normal(size=(4, 5)).astype(np.float32)
    out = tmp_path / "v" / "glove.txt"
    glove.write_glove(words, vectors, out)
    assert out.read_text(encoding="utf-8").splitlines()[0].split(" ")[0] == "the"
    vocab = Vocab.build(["film", "the", "unseen"])
    got, rows, dim = load_vectors(out, vocab)
    assert dim == 5 and sorted(vocab.tokens[r] for r in rows) == ["film", "the"]
    for vec, r in zip(got, rows):
        np.testing.assert_allclose(vec, vectors[words.index(vocab.tokens[r])], rtol=1e-4)
    assert list(out.parent.iterdir()) == [out]  # no temporary file left behind


def test_interrupted_write_leaves_nothing(glove, tmp_path):
    class Boom(Exception):
        pass

    def rows():
        yield np.zeros(3, np.float32)
        raise Boom

    with pytest.raises(Boom):
        glove.write_glove(["a", "b"], rows(), tmp_path / "glove.txt")
    assert list(tmp_path.iterdir()) == []


def test_a_wheel_with_another_checksum_is_refused(glove, tmp_path):
    (tmp_path / glove.WHEEL).write_bytes(b"not the wheel")
    with pytest.raises(SystemExit, match="SHA-256"):
        glove.fetch_wheel(tmp_path)
