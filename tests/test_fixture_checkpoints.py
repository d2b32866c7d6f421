"""Checkpoints written by an earlier layout of the package (tests/fixtures/checkpoints, made by
tests/fixtures/make_checkpoints.py) load with today's code and give the outputs recorded when
they were written: the ``rnnkit eval``/``predict``/``translate`` output, and the model's own
logits or probabilities on a fixed input."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures"))
from checkpoint_outputs import FIXTURES, HERE, compute  # noqa: E402


@pytest.mark.parametrize("name", list(FIXTURES))
def test_fixture_checkpoint_gives_recorded_outputs(name, kernels):
    """The outputs were recorded with the NumPy cells; the compiled kernels round differently
    and agree with them to 1e-6 in float32 (tests/test_kernels.py)."""
    atol = 1e-7 if kernels == "numpy" else 1e-6
    d = HERE / name
    texts, arrays = compute(name)
    expected = json.loads((d / "expected.json").read_text())
    assert texts == expected
    if (d / "expected.npz").exists():
        with np.load(d / "expected.npz") as want:
            assert sorted(arrays) == sorted(want.files)
            for key in want.files:
                np.testing.assert_allclose(arrays[key], want[key], rtol=1e-6, atol=atol,
                                           err_msg=f"{name}: {key}")
    else:
        assert not arrays


def test_every_checkpoint_kind_has_a_fixture():
    kinds = {kind for kind, _ in FIXTURES.values()}
    assert kinds == {"lm", "ngram", "classifier", "tagger", "seq2seq", "conditioned"}
    for name in FIXTURES:
        manifest = json.loads((HERE / name / "ckpt" / "manifest.json").read_text())
        assert manifest["kind"] == FIXTURES[name][0]
