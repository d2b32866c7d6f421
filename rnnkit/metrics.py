"""Evaluation metrics: accuracy, confusion matrix, macro-F1, BIO span P/R/F1 (classification
and tagging); exact match, token accuracy and corpus BLEU (sequence outputs).

Plain NumPy, no scikit-learn.  Conventions (the same as scikit-learn's defaults where both
define the figure):

* ``confusion_matrix(y_true, y_pred, K)[i, j]`` counts examples of true class ``i`` predicted
  as ``j``.
* Per class, ``precision = tp / (tp + fp)`` and ``recall = tp / (tp + fn)``, each 0 when its
  denominator is 0; ``F1 = 2 P R / (P + R)`` (0 when ``P + R = 0``).
* ``macro_f1`` is the unweighted mean of the per-class F1 over the classes that occur in
  ``y_true`` or ``y_pred`` (a class the model knows but that is in neither does not count).

Spans (:func:`spans`) follow the CoNLL ``conlleval`` script: a chunk starts at ``B-X`` or
``S-X``, or at ``I-X``/``E-X`` when the previous tag is ``O`` or of another type (so IOB1,
IOB2 and BIOES all work), and ends before ``O``, ``B-``, ``S-``, a tag of another type, or after
``E-X``/``S-X``.  Span precision/recall/F1 count exact matches of (type, start, end).

>>> confusion_matrix([0, 0, 1, 1], [0, 1, 1, 1], 2).tolist()
[[1, 1], [0, 2]]
>>> round(macro_f1([0, 0, 1, 1], [0, 1, 1, 1]), 4)
0.7333
>>> sorted(spans(["B-PER", "I-PER", "O", "I-LOC"]))
[('LOC', 3, 4), ('PER', 0, 2)]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def accuracy(y_true, y_pred) -> float:
    """Fraction of positions where ``y_true == y_pred`` (any array-likes of one shape)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"accuracy: y_true has shape {y_true.shape} but y_pred {y_pred.shape}")
    if y_true.size == 0:
        raise ValueError("accuracy: no examples")
    return float((y_true == y_pred).mean())


def confusion_matrix(y_true, y_pred, num_classes: int | None = None) -> np.ndarray:
    """``(K, K)`` int64 counts; rows are true classes, columns predicted ones."""
    y_true = np.asarray(y_true, dtype=np.int64).ravel()
    y_pred = np.asarray(y_pred, dtype=np.int64).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"confusion_matrix: {y_true.size} true labels but {y_pred.size} "
                         "predictions")
    K = num_classes if num_classes is not None else int(max(y_true.max(initial=-1),
                                                            y_pred.max(initial=-1))) + 1
    if y_true.size and (min(y_true.min(), y_pred.min()) < 0 or
                        max(y_true.max(), y_pred.max()) >= K):
        raise ValueError(f"confusion_matrix: labels must be in 0..{K - 1}")
    m = np.zeros((K, K), np.int64)
    np.add.at(m, (y_true, y_pred), 1)
    return m


def per_class(matrix: np.ndarray) -> dict[str, np.ndarray]:
    """Per-class ``precision``, ``recall``, ``f1`` and ``support`` from a confusion matrix."""
    m = np.asarray(matrix, dtype=np.float64)
    tp = np.diag(m)
    pred, true = m.sum(axis=0), m.sum(axis=1)
    precision = np.divide(tp, pred, out=np.zeros_like(tp), where=pred > 0)
    recall = np.divide(tp, true, out=np.zeros_like(tp), where=true > 0)
    s = precision + recall
    f1 = np.divide(2 * precision * recall, s, out=np.zeros_like(tp), where=s > 0)
    return {"precision": precision, "recall": recall, "f1": f1,
            "support": true.astype(np.int64)}


def macro_f1(y_true, y_pred, num_classes: int | None = None) -> float:
    """Mean F1 over the classes present in ``y_true`` or ``y_pred``."""
    m = confusion_matrix(y_true, y_pred, num_classes)
    present = (m.sum(axis=0) + m.sum(axis=1)) > 0
    if not present.any():
        raise ValueError("macro_f1: no examples")
    return float(per_class(m)["f1"][present].mean())


def format_confusion(matrix: np.ndarray, labels: Sequence[str]) -> str:
    """The matrix as an aligned text table, true classes down, predicted across."""
    labels = [str(x) for x in labels]
    cells = [[str(int(v)) for v in row] for row in np.asarray(matrix)]
    w = max([len(x) for x in labels] + [len(c) for row in cells for c in row] + [4])
    rows = [labels[i].ljust(max(w, 9)) + "  " + "  ".join(c.rjust(w) for c in cells[i])
            for i in range(len(labels))]
    head = "true\\pred".ljust(max(w, 9)) + "  " + "  ".join(x.rjust(w) for x in labels)
    return "\n".join([head, *rows])


# -- spans ------------------------------------------------------------------------------------


def _split(tag: str) -> tuple[str, str]:
    if tag == "O" or len(tag) < 3 or tag[1] != "-" or tag[0] not in "BIES":
        return "O", ""
    return tag[0], tag[2:]


def spans(tags: Sequence[str]) -> set[tuple[str, int, int]]:
    """The chunks of one tag sequence as ``(type, start, end)`` with ``end`` exclusive."""
    out = set()
    start, kind = None, ""
    prev_p, prev_t = "O", ""
    for i, tag in enumerate(list(tags) + ["O"]):
        p, t = _split(tag)
        # end of the open chunk before position i (conlleval's endOfChunk)
        end = start is not None and (
            p in ("O", "B", "S") or t != prev_t or prev_p in ("E", "S"))
        if end:
            out.add((kind, start, i))
            start = None
        # start of a chunk at position i (conlleval's startOfChunk)
        if p in ("B", "S") or (p in ("I", "E") and (start is None or t != prev_t
                                                    or prev_p in ("E", "S", "O"))):
            start, kind = i, t
        prev_p, prev_t = p, t
    return out


def span_prf(true_seqs: Sequence[Sequence[str]],
             pred_seqs: Sequence[Sequence[str]]) -> dict[str, float]:
    """Micro-averaged span precision, recall and F1 over sentences (exact type and bounds)."""
    if len(true_seqs) != len(pred_seqs):
        raise ValueError(f"span_prf: {len(true_seqs)} true sequences but {len(pred_seqs)} "
                         "predicted ones")
    tp = n_true = n_pred = 0
    for gold, pred in zip(true_seqs, pred_seqs):
        if len(gold) != len(pred):
            raise ValueError("span_prf: a predicted sequence differs in length from its "
                             f"reference ({len(pred)} vs {len(gold)})")
        g, p = spans(gold), spans(pred)
        tp += len(g & p)
        n_true += len(g)
        n_pred += len(p)
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_true if n_true else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "true_spans": n_true,
            "predicted_spans": n_pred}


# -- sequences: exact match, token accuracy, BLEU ------------------------------------------


def sequence_scores(hyps, refs, finished) -> tuple[float, float]:
    """``(exact match, token accuracy)`` of token sequences (lists of strings or ids).  Token
    accuracy compares ``hyp <eos>`` with ``ref <eos>`` position by position over the longer of
    the two, so missing and extra tokens both count as errors; a hypothesis cut at the length
    limit has no ``<eos>``."""
    exact = correct = total = 0
    end = object()
    for h, r, done in zip(hyps, refs, finished):
        h = list(h) + ([end] if done else [])
        r = list(r) + [end]
        exact += h == r
        correct += sum(a is b or a == b for a, b in zip(h, r))
        total += max(len(h), len(r))
    return exact / max(1, len(hyps)), correct / max(1, total)


def corpus_bleu(hyps: list[str], refs: list[str], level: str = "word") -> float | None:
    """Corpus BLEU (sacrebleu; characters as tokens at char level); None without sacrebleu."""
    try:
        import sacrebleu
    except ImportError:
        return None
    tokenize = "char" if level == "char" else "13a"
    # force: our texts are tokenized on purpose (normalised, punctuation split off)
    return float(sacrebleu.corpus_bleu(hyps, [refs], tokenize=tokenize, force=True).score)
