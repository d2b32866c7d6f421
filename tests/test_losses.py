"""rnnkit.nn.losses: softmax cross-entropy against a direct computation (and PyTorch), masking,
gradients, stability at huge logits, perplexity."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from gradcheck import check_module_grads

from rnnkit.nn.losses import log_softmax, perplexity, softmax, softmax_cross_entropy

V = 5


def direct(logits, targets, mask=None):
    """Textbook mean NLL and its gradient, for moderate logits."""
    z = logits.reshape(-1, V)
    y = targets.reshape(-1)
    w = np.ones(y.size) if mask is None else np.asarray(mask, float).reshape(-1)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    nll = -np.log(p[np.arange(y.size), y])
    onehot = np.eye(V)[y]
    grad = w[:, None] * (p - onehot) / w.sum()
    return (nll * w).sum() / w.sum(), grad.reshape(logits.shape)


def case(seed=0, shape=(3, 4)):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((*shape, V)), rng.integers(0, V, shape), rng


@pytest.mark.parametrize("shape", [(7,), (3, 4)], ids=["flat", "batch-time"])
def test_matches_direct_computation(shape):
    logits, targets, _ = case(0, shape)
    loss, dlogits, n = softmax_cross_entropy(logits, targets)
    want, dwant = direct(logits, targets)
    assert n == targets.size and dlogits.shape == logits.shape
    assert loss == pytest.approx(want, rel=1e-14)
    np.testing.assert_allclose(dlogits, dwant, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(softmax(logits), np.exp(log_softmax(logits)), rtol=1e-14)


def test_matches_torch():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    logits, targets, rng = case(1)
    mask = rng.random(targets.shape) < 0.6
    for m in (None, mask):
        loss, dlogits, _ = softmax_cross_entropy(logits, targets, m)
        z = torch.tensor(logits.reshape(-1, V), requires_grad=True)
        y = torch.tensor(targets.reshape(-1) if m is None
                         else np.where(m, targets, -100).reshape(-1))
        ref = F.cross_entropy(z, y, ignore_index=-100)
        ref.backward()
        assert loss == pytest.approx(ref.item(), rel=1e-12)
        np.testing.assert_allclose(dlogits.reshape(-1, V), z.grad.numpy(), rtol=1e-10,
                                   atol=1e-15)


@pytest.mark.parametrize("as_float", [False, True], ids=["bool", "float"])
def test_masked_mean(as_float):
    logits, targets, rng = case(2)
    mask = rng.random(targets.shape) < 0.5
    mask[0, 0], mask[0, 1] = True, False
    loss, dlogits, n = softmax_cross_entropy(logits, targets,
                                             mask.astype(float) if as_float else mask)
    assert n == mask.sum()
    sub_loss, sub_grad, _ = softmax_cross_entropy(logits[mask], targets[mask])
    assert loss == pytest.approx(sub_loss, rel=1e-14)
    np.testing.assert_allclose(dlogits[mask], sub_grad, rtol=1e-14)
    assert not dlogits[~mask].any()
    want, dwant = direct(logits, targets, mask)
    assert loss == pytest.approx(want, rel=1e-14)
    np.testing.assert_allclose(dlogits, dwant, rtol=1e-12, atol=1e-15)


def test_sum_reduction_and_empty_mask():
    logits, targets, _ = case(3)
    mean, dmean, n = softmax_cross_entropy(logits, targets)
    total, dtotal, _ = softmax_cross_entropy(logits, targets, reduction="sum")
    assert total == pytest.approx(mean * n, rel=1e-14)
    np.testing.assert_allclose(dtotal, dmean * n, rtol=1e-13)
    loss, dlogits, n = softmax_cross_entropy(logits, targets, np.zeros(targets.shape, bool))
    assert (loss, n) == (0.0, 0) and not dlogits.any()


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("masked", [False, True])
def test_gradcheck(masked, reduction):
    logits, targets, rng = case(4)
    mask = rng.random(targets.shape) < 0.6 if masked else None

    def fwd(logits):
        loss, dlogits, _ = softmax_cross_entropy(logits, targets, mask, reduction)
        return np.array(loss), dlogits

    def bwd(dloss, dlogits):
        return {"logits": dloss * dlogits}

    check_module_grads(fwd, bwd, {"logits": logits})


def test_stable_at_huge_logits():
    logits, targets, _ = case(5)
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow is fine
        big, dbig, _ = softmax_cross_entropy(1e4 * logits, targets)
        shifted, dshifted, _ = softmax_cross_entropy(logits + 1e4, targets)
    assert math.isfinite(big) and np.isfinite(dbig).all()
    ref, dref, _ = softmax_cross_entropy(logits, targets)
    assert shifted == pytest.approx(ref, rel=1e-10)  # invariant to a constant shift
    np.testing.assert_allclose(dshifted, dref, atol=1e-12)
    # Exact answers at the extremes: a sure right answer costs 0, a sure wrong one the gap.
    z = np.array([[1e4, 0.0, -1e4], [0.0, 1e4, 0.0]])
    loss, dz, _ = softmax_cross_entropy(z, np.array([0, 0]), reduction="sum")
    assert loss == pytest.approx(1e4, rel=1e-12)
    np.testing.assert_allclose(dz, [[0, 0, 0], [-1, 1, 0]], atol=1e-12)
    loss32, dz32, _ = softmax_cross_entropy(z.astype(np.float32), np.array([0, 1]))
    assert loss32 == 0.0 and dz32.dtype == np.float32 and np.isfinite(dz32).all()


def test_perplexity():
    assert perplexity(0.0) == 1.0
    assert perplexity(math.log(7.0)) == pytest.approx(7.0)
    assert perplexity(1e4) == math.inf
    loss, _, _ = softmax_cross_entropy(np.zeros((4, V)), np.arange(4))
    assert perplexity(loss) == pytest.approx(V)  # uniform guesses: perplexity = vocabulary


def test_bad_input():
    logits = np.zeros((2, 3, V))
    with pytest.raises(ValueError, match=re.escape("expected targets of shape (2, 3), got (2,)")):
        softmax_cross_entropy(logits, np.zeros(2, int))
    with pytest.raises(ValueError, match=re.escape("expected targets in 0..4, got values from 0 "
                                                   "to 5")):
        softmax_cross_entropy(logits, np.array([[0, 1, 2], [3, 4, 5]]))
    with pytest.raises(ValueError, match=re.escape("expected mask of shape (2, 3), got (3,)")):
        softmax_cross_entropy(logits, np.zeros((2, 3), int), np.ones(3))
    with pytest.raises(ValueError, match="reduction must be 'mean' or 'sum', got 'max'"):
        softmax_cross_entropy(logits, np.zeros((2, 3), int), reduction="max")
    loss, _, _ = softmax_cross_entropy(logits, [[0, 1, 2], [3, 4, 0]])  # lists are fine
    assert loss == pytest.approx(math.log(V))
