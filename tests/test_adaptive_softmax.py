"""Adaptive softmax (rnnkit.nn.adaptive_softmax): probabilities sum to 1 over the vocabulary,
the training loss equals the full log-probabilities at the targets, float64 gradient checks of
both paths, and equality with torch.nn.AdaptiveLogSoftmaxWithLoss given the same weights."""

from __future__ import annotations

import numpy as np
import pytest
from gradcheck import check_module_grads

from rnnkit.errors import ConfigError
from rnnkit.nn.adaptive_softmax import AdaptiveSoftmax

D, V, CUT = 64, 50, [5, 20, 35]  # tail projections of 16, 4 and 1 features


def make(seed=0, dtype="float64"):
    asm = AdaptiveSoftmax(D, V, CUT, dtype=dtype, rng=seed)
    rng = np.random.default_rng(seed + 1)
    asm.head.param["b"][...] = rng.uniform(-0.5, 0.5, asm.head.param["b"].shape)
    return asm


def case(N=9, seed=2):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, D))
    y = np.array([0, 4, 5, 19, 20, 34, 35, 49, 2][:N])  # every cluster and its edges
    return x, y


def test_probabilities_sum_to_one_and_the_loss_is_the_full_log_probability():
    asm = make()
    x, y = case()
    lp, _ = asm.log_prob(x)
    np.testing.assert_allclose(np.exp(lp).sum(axis=1), 1, rtol=0, atol=1e-13)
    loss, dx, n = asm.nll(x, y, grad=False)
    assert dx is None and n == len(y)
    np.testing.assert_allclose(loss, -lp[np.arange(len(y)), y].mean(), rtol=1e-13)
    mask = np.array([1, 0, 1, 1, 0, 1, 1, 1, 0], bool)
    masked, _, n = asm.nll(x, y, mask, grad=False)
    assert n == 6
    np.testing.assert_allclose(masked, -lp[np.arange(len(y)), y][mask].mean(), rtol=1e-13)


def test_gradcheck_of_the_training_loss():
    asm = make()
    x, y = case()
    mask = np.array([1, 1, 0, 1, 1, 1, 0, 1, 1], bool)

    def fwd(x):
        loss, _, _ = asm.nll(x, y, mask, grad=False)
        return np.array([loss]), None

    def bwd(dloss, cache):
        _, dx, _ = asm.nll(x0, y, mask)
        for g in asm.grads().values():
            g *= dloss[0]
        return {"x": dx * dloss[0]}

    x0 = x.copy()
    errors = check_module_grads(fwd, bwd, {"x": x}, asm.parameters(), asm.grads())
    assert {"head.W", "head.b", "tail.2.proj.W", "tail.2.out.W"} <= set(errors)


def test_gradcheck_of_the_full_log_probabilities():
    asm = make()
    x, _ = case(4)

    def fwd(x):
        return asm.log_prob(x)

    def bwd(dlp, cache):
        return {"x": asm.backward_log_prob(dlp, cache)}

    check_module_grads(fwd, bwd, {"x": x}, asm.parameters(), asm.grads())


def test_bad_cutoffs():
    for bad in ([], [5, 5], [0, 3], [10, 50], ["a"], [2.5]):
        with pytest.raises(ConfigError, match="cutoffs must"):
            AdaptiveSoftmax(D, V, bad)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_matches_torch(dtype):
    torch = pytest.importorskip("torch")
    asm = make(dtype=dtype)
    tdt = getattr(torch, dtype)
    ref = torch.nn.AdaptiveLogSoftmaxWithLoss(D, V, CUT, div_value=4.0, head_bias=True,
                                              dtype=tdt)
    with torch.no_grad():
        ref.head.weight.copy_(torch.from_numpy(asm.head.param["W"].T.copy()))
        ref.head.bias.copy_(torch.from_numpy(asm.head.param["b"]))
        for i, (proj, out) in enumerate(asm.tails):
            ref.tail[i][0].weight.copy_(torch.from_numpy(proj.param["W"].T.copy()))
            ref.tail[i][1].weight.copy_(torch.from_numpy(out.param["W"].T.copy()))
    x, y = case()
    x = x.astype(dtype)
    xt = torch.tensor(x, requires_grad=True)
    res = ref(xt, torch.from_numpy(y))
    res.loss.backward()
    asm.zero_grad()
    loss, dx, _ = asm.nll(x, y)
    tol = 1e-10 if dtype == "float64" else 1e-5
    assert abs(loss - res.loss.item()) <= tol
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=0, atol=tol)
    np.testing.assert_allclose(asm.head.grad["W"], ref.head.weight.grad.numpy().T, atol=tol)
    np.testing.assert_allclose(asm.head.grad["b"], ref.head.bias.grad.numpy(), atol=tol)
    for i, (proj, out) in enumerate(asm.tails):
        np.testing.assert_allclose(proj.grad["W"], ref.tail[i][0].weight.grad.numpy().T,
                                   atol=tol)
        np.testing.assert_allclose(out.grad["W"], ref.tail[i][1].weight.grad.numpy().T, atol=tol)
    lp, _ = asm.log_prob(x)
    np.testing.assert_allclose(lp, ref.log_prob(torch.from_numpy(x)).detach().numpy(), atol=tol)
