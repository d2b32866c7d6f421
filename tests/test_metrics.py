"""rnnkit.metrics against hand-computed examples (no scikit-learn)."""

from __future__ import annotations

import numpy as np
import pytest

from rnnkit.metrics import (
    accuracy,
    confusion_matrix,
    format_confusion,
    macro_f1,
    per_class,
    span_prf,
    spans,
)


def test_accuracy_and_confusion_by_hand():
    y = [0, 1, 2, 2, 1, 0]
    p = [0, 2, 2, 2, 1, 1]
    assert accuracy(y, p) == pytest.approx(4 / 6)
    assert confusion_matrix(y, p, 3).tolist() == [[1, 1, 0], [0, 1, 1], [0, 0, 2]]
    r = per_class(confusion_matrix(y, p, 3))
    # class 0: tp 1, fp 0, fn 1 -> P 1, R 1/2; class 1: tp 1, fp 1, fn 1 -> 1/2, 1/2;
    # class 2: tp 2, fp 1, fn 0 -> 2/3, 1
    np.testing.assert_allclose(r["precision"], [1, 1 / 2, 2 / 3])
    np.testing.assert_allclose(r["recall"], [1 / 2, 1 / 2, 1])
    np.testing.assert_allclose(r["f1"], [2 / 3, 1 / 2, 4 / 5])
    assert r["support"].tolist() == [2, 2, 2]
    assert macro_f1(y, p, 3) == pytest.approx((2 / 3 + 1 / 2 + 4 / 5) / 3)


def test_macro_f1_skips_classes_absent_from_both_and_scores_missed_ones_zero():
    # class 3 exists in the model but appears nowhere: not averaged; class 2 is true once,
    # never predicted: F1 0, averaged
    y, p = [0, 0, 1, 2], [0, 0, 1, 1]
    f = per_class(confusion_matrix(y, p, 4))["f1"]
    np.testing.assert_allclose(f, [1, 2 / 3, 0, 0])
    assert macro_f1(y, p, 4) == pytest.approx((1 + 2 / 3 + 0) / 3)


def test_errors():
    with pytest.raises(ValueError, match="shape"):
        accuracy([1, 2], [1])
    with pytest.raises(ValueError, match="no examples"):
        accuracy([], [])
    with pytest.raises(ValueError, match=r"labels must be in 0..1"):
        confusion_matrix([0, 2], [0, 1], 2)


def test_format_confusion():
    text = format_confusion(np.array([[5, 1], [0, 12]]), ["neg", "pos"])
    lines = text.splitlines()
    assert lines[0].split() == ["true\\pred", "neg", "pos"]
    assert lines[1].split() == ["neg", "5", "1"] and lines[2].split() == ["pos", "0", "12"]


@pytest.mark.parametrize("tags, want", [
    (["B-PER", "I-PER", "O", "B-LOC"], {("PER", 0, 2), ("LOC", 3, 4)}),
    (["B-PER", "B-PER", "I-PER"], {("PER", 0, 1), ("PER", 1, 3)}),  # B starts a new chunk
    (["I-PER", "I-PER", "O", "I-LOC", "I-ORG"],  # IOB1: I after O or another type starts
     {("PER", 0, 2), ("LOC", 3, 4), ("ORG", 4, 5)}),
    (["B-PER", "I-LOC"], {("PER", 0, 1), ("LOC", 1, 2)}),  # type change ends and starts
    (["S-PER", "B-LOC", "E-LOC", "E-LOC", "S-X"],  # BIOES; E after E starts a new chunk
     {("PER", 0, 1), ("LOC", 1, 3), ("LOC", 3, 4), ("X", 4, 5)}),
    (["O", "O"], set()),
    (["B-MISC"], {("MISC", 0, 1)}),
])
def test_spans_follow_conlleval(tags, want):
    assert spans(tags) == want


def test_span_prf_by_hand():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    pred = [["B-PER", "O", "O", "B-LOC"], ["B-ORG", "B-ORG"]]
    # gold spans: PER(0,2) LOC(3,4) ORG(0,1) = 3; predicted: PER(0,1) LOC ORG ORG(1,2) = 4;
    # correct: LOC, ORG(0,1) = 2
    r = span_prf(gold, pred)
    assert r["precision"] == pytest.approx(2 / 4) and r["recall"] == pytest.approx(2 / 3)
    assert r["f1"] == pytest.approx(2 * (1 / 2) * (2 / 3) / (1 / 2 + 2 / 3))
    assert (r["true_spans"], r["predicted_spans"]) == (3, 4)
    assert span_prf([["O"]], [["O"]])["f1"] == 0.0
    with pytest.raises(ValueError, match="differs in length"):
        span_prf([["O", "O"]], [["O"]])
