"""rnnkit.nn.attention: gradient checks with masking, weights on padding, PyTorch twin."""

from __future__ import annotations

import numpy as np
import pytest
from gradcheck import check_module_grads

from rnnkit.errors import ConfigError
from rnnkit.nn.attention import KINDS, Attention, masked_softmax

B, T, S, HQ, HM = 3, 2, 5, 4, 6
LENGTHS = np.array([5, 2, 3])
MASK = np.arange(S)[None, :] < LENGTHS[:, None]


def make(kind, seed=0, hq=HQ, hm=HM):
    att = Attention(kind, hq, hq if kind == "dot" else hm, 3, dtype="float64", rng=seed)
    rng = np.random.default_rng(seed + 1)
    for p in att.parameters().values():
        p[...] = rng.uniform(-0.9, 0.9, p.shape)
    return att


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("masked", [True, False], ids=["masked", "full"])
def test_gradcheck(kind, masked):
    att = make(kind)
    rng = np.random.default_rng(2)
    hm = att.memory_size
    mask = MASK if masked else None

    def fwd(q, m):
        c, a, cache = att.forward(q, m, mask)
        return (c, a), cache

    def bwd(douts, cache):
        dq, dm = att.backward(douts[0], cache, douts[1])
        return {"q": dq, "m": dm}

    errors = check_module_grads(fwd, bwd, {"q": rng.standard_normal((B, T, HQ)),
                                           "m": rng.standard_normal((B, S, hm))},
                                att.parameters(), att.grads())
    assert set(errors) == {"q", "m", *att.parameters()}


@pytest.mark.parametrize("kind", KINDS)
def test_weights_sum_to_one_and_zero_on_padding(kind):
    att = make(kind)
    rng = np.random.default_rng(3)
    q = 5 * rng.standard_normal((B, T, HQ))
    m = rng.standard_normal((B, S, att.memory_size))
    m_padded = m.copy()
    m_padded[~MASK] = 1e3  # whatever sits in padded positions never matters
    c, a, _ = att.forward(q, m, MASK)
    c2, _, _ = att.forward(q, m_padded, MASK)
    np.testing.assert_allclose(a.sum(-1), 1.0, rtol=1e-12)
    assert (a[~np.broadcast_to(MASK[:, None], a.shape)] == 0).all()
    np.testing.assert_allclose(c, c2, rtol=1e-12)
    # each row equals the same row attended alone, unpadded
    for b in range(B):
        n = LENGTHS[b]
        c1, a1, _ = att.forward(q[b:b + 1], m[b:b + 1, :n])
        np.testing.assert_allclose(a1[0], a[b, :, :n], rtol=1e-12)
        np.testing.assert_allclose(c1[0], c[b], rtol=1e-12, atol=1e-14)


def test_scores_by_hand():
    rng = np.random.default_rng(4)
    q, m = rng.standard_normal((1, 1, HQ)), rng.standard_normal((1, S, HM))
    att = make("additive")
    p = att.param
    e = np.array([p["v"] @ np.tanh(q[0, 0] @ p["W_q"] + m[0, s] @ p["W_k"] + p["b"])
                  for s in range(S)])
    w = np.exp(e - e.max()) / np.exp(e - e.max()).sum()
    c, a, _ = att.forward(q, m)
    np.testing.assert_allclose(a[0, 0], w, rtol=1e-12)
    np.testing.assert_allclose(c[0, 0], w @ m[0], rtol=1e-12)
    gen = make("general")
    e = np.array([q[0, 0] @ (m[0, s] @ gen.param["W_a"]) for s in range(S)])
    np.testing.assert_allclose(gen.forward(q, m)[1][0, 0], np.exp(e) / np.exp(e).sum(),
                               rtol=1e-12)


def test_masked_softmax_extreme():
    s = np.array([[[1e4, -1e4, 3.0]]])
    a = masked_softmax(s.copy(), np.array([[False, True, True]]))
    assert np.isfinite(a).all() and a[0, 0, 0] == 0 and a[0, 0, 2] == pytest.approx(1.0)


@pytest.mark.parametrize("kind", KINDS)
def test_matches_torch(kind):
    torch = pytest.importorskip("torch")
    att = make(kind)
    rng = np.random.default_rng(5)
    q = rng.standard_normal((B, T, HQ))
    m = rng.standard_normal((B, S, att.memory_size))
    dc = rng.standard_normal((B, T, att.memory_size))
    c, _, cache = att.forward(q, m, MASK)
    att.zero_grad()
    dq, dm = att.backward(dc, cache)
    tq, tm = (torch.tensor(x, requires_grad=True) for x in (q, m))
    tp = {k: torch.tensor(v, requires_grad=True) for k, v in att.param.items()}
    if kind == "dot":
        e = tq @ tm.transpose(1, 2)
    elif kind == "general":
        e = tq @ (tm @ tp["W_a"]).transpose(1, 2)
    else:
        e = torch.tanh((tq @ tp["W_q"])[:, :, None] + (tm @ tp["W_k"] + tp["b"])[:, None]) \
            @ tp["v"]
    e = e.masked_fill(~torch.tensor(MASK)[:, None], float("-inf"))
    tc = torch.softmax(e, -1) @ tm
    tc.backward(torch.tensor(dc))
    np.testing.assert_allclose(c, tc.detach().numpy(), atol=1e-10)
    np.testing.assert_allclose(dq, tq.grad.numpy(), atol=1e-10)
    np.testing.assert_allclose(dm, tm.grad.numpy(), atol=1e-10)
    for k, v in tp.items():
        np.testing.assert_allclose(att.grad[k], v.grad.numpy(), atol=1e-10)


def test_bad_input():
    with pytest.raises(ConfigError, match="dot attention needs query and memory of one size"):
        Attention("dot", 4, 6)
    with pytest.raises(ConfigError, match="attention must be one of"):
        Attention("cosine", 4, 4)
    att = make("general")
    with pytest.raises(ValueError, match=r"Attention: expected query of shape \(3, T, 4\), "
                                         r"got \(3, 2, 5\)"):
        att.forward(np.zeros((B, T, 5)), np.zeros((B, S, HM)))
    with pytest.raises(ValueError, match="at least one True"):
        att.forward(np.zeros((B, T, HQ)), np.zeros((B, S, HM)), np.zeros((B, S), bool))
