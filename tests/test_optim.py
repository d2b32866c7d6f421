"""rnnkit.train.optim and rnnkit.train.schedules against torch.optim: optimisers, clipping,
schedules, checkpoints."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from rnnkit.errors import CheckpointError, NonFiniteError
from rnnkit.train.optim import (
    SGD,
    Adam,
    clip_grad_norm,
    clip_grad_value,
    global_norm,
    make_optimizer,
)
from rnnkit.train.schedules import ReduceOnPlateau, StepDecay

SHAPES = {"W_x": (3, 8), "W_h": (2, 8), "b": (8,), "scale": ()}
TOL = {np.float64: 1e-12, np.float32: 1e-6}


def make_params(rng: np.random.Generator, dtype) -> dict[str, np.ndarray]:
    return {k: rng.standard_normal(s).astype(dtype) for k, s in SHAPES.items()}


def grad_sequence(rng: np.random.Generator, dtype, steps: int) -> list[dict[str, np.ndarray]]:
    return [
        {k: rng.standard_normal(s).astype(dtype) for k, s in SHAPES.items()} for _ in range(steps)
    ]


def run_ours(make, params, grads):
    opt = make(params)
    for g in grads:
        opt.step(g)
    return opt


def run_torch(torch_make, params, grads):
    torch = pytest.importorskip("torch")
    tp = {k: torch.nn.Parameter(torch.from_numpy(v.copy())) for k, v in params.items()}
    opt = torch_make(list(tp.values()))
    for g in grads:
        for k, p in tp.items():
            p.grad = torch.from_numpy(g[k].copy())
        opt.step()
    return {k: p.detach().numpy() for k, p in tp.items()}


SGD_CASES = [
    {},
    {"momentum": 0.9},
    {"momentum": 0.9, "nesterov": True},
    {"weight_decay": 0.1},
    {"momentum": 0.8, "dampening": 0.3},
    {"momentum": 0.9, "dampening": 0.5, "weight_decay": 0.05},
    {"momentum": 0.9, "nesterov": True, "weight_decay": 0.01},
]
ADAM_CASES = [
    {},
    {"betas": (0.8, 0.99), "eps": 1e-6},
    {"weight_decay": 0.1},
    {"amsgrad": True},
    {"amsgrad": True, "weight_decay": 0.05},
    {"decoupled": True, "weight_decay": 0.1},
    {"decoupled": True, "weight_decay": 0.1, "amsgrad": True},
]


def _torch_sgd(kw):
    torch = pytest.importorskip("torch")
    return lambda ps: torch.optim.SGD(ps, lr=0.1, **kw)


def _torch_adam(kw):
    torch = pytest.importorskip("torch")
    kw = dict(kw)
    cls = torch.optim.AdamW if kw.pop("decoupled", False) else torch.optim.Adam
    return lambda ps: cls(ps, lr=0.01, **kw)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(
    ("ours", "theirs"),
    [(lambda ps, kw=kw: SGD(ps, lr=0.1, **kw), _torch_sgd(kw)) for kw in SGD_CASES]
    + [(lambda ps, kw=kw: Adam(ps, lr=0.01, **kw), _torch_adam(kw)) for kw in ADAM_CASES],
    ids=[f"sgd-{kw}" for kw in SGD_CASES] + [f"adam-{kw}" for kw in ADAM_CASES],
)
def test_matches_torch(ours, theirs, dtype):
    rng = np.random.default_rng(0)
    params = make_params(rng, dtype)
    grads = grad_sequence(rng, dtype, 10)
    expected = run_torch(theirs, params, grads)
    live = dict(params)
    run_ours(ours, params, grads)
    for k, v in params.items():
        assert v is live[k], "parameters must be updated in place"
        assert v.dtype == dtype
        np.testing.assert_allclose(v, expected[k], rtol=0, atol=TOL[dtype], err_msg=k)


def test_lr_change_between_steps_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    params = make_params(rng, np.float64)
    grads = grad_sequence(rng, np.float64, 6)
    tp = [torch.nn.Parameter(torch.from_numpy(v.copy())) for v in params.values()]
    topt = torch.optim.Adam(tp, lr=0.01, amsgrad=True)
    opt = Adam(params, lr=0.01, amsgrad=True)
    for i, g in enumerate(grads):
        opt.lr = topt.param_groups[0]["lr"] = 0.01 * 0.5**i
        for p, k in zip(tp, params):
            p.grad = torch.from_numpy(g[k].copy())
        topt.step()
        opt.step(g)
    for p, k in zip(tp, params):
        np.testing.assert_allclose(params[k], p.detach().numpy(), rtol=0, atol=1e-12)


def test_grads_with_extra_keys_are_ignored_and_missing_keys_named():
    rng = np.random.default_rng(2)
    params = make_params(rng, np.float64)
    g = grad_sequence(rng, np.float64, 1)[0]
    opt = SGD(params, lr=0.1)
    opt.step({**g, "frozen.W": np.zeros(3)})
    del g["W_h"]
    with pytest.raises(ValueError, match="W_h"):
        opt.step(g)


def test_gradient_of_wrong_shape():
    opt = Adam({"W": np.zeros((2, 3))})
    with pytest.raises(ValueError, match=r"expected gradient 'W' of shape \(2, 3\), got \(3, 2\)"):
        opt.step({"W": np.zeros((3, 2))})


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda p: SGD(p, lr=-0.1), "lr >= 0"),
        (lambda p: SGD(p, lr=float("nan")), "lr"),
        (lambda p: SGD(p, lr=0.1, momentum=-0.5), "momentum >= 0"),
        (lambda p: SGD(p, lr=0.1, weight_decay=-1), "weight_decay >= 0"),
        (lambda p: SGD(p, lr=0.1, dampening=1.5), "dampening"),
        (lambda p: SGD(p, lr=0.1, nesterov=True), "nesterov"),
        (lambda p: SGD(p, lr=0.1, momentum=0.9, dampening=0.1, nesterov=True), "nesterov"),
        (lambda p: Adam(p, betas=(1.0, 0.999)), "0 <= beta1 < 1"),
        (lambda p: Adam(p, betas=(0.9, -0.1)), "0 <= beta2 < 1"),
        (lambda p: Adam(p, betas=0.9), "pair"),
        (lambda p: Adam(p, eps=-1e-8), "eps >= 0"),
        (lambda p: Adam(p, lr=math.inf), "lr"),
        (lambda p: Adam({}), "empty"),
        (lambda p: Adam({"W": np.zeros(3, dtype=np.int64)}), "floating-point"),
        (lambda p: Adam({"a": p["W"], "b": p["W"]}), "same array"),
    ],
)
def test_bad_hyperparameters(make, match):
    with pytest.raises(ValueError, match=match):
        make({"W": np.zeros(3)})


def test_lr_attribute_is_checked():
    opt = SGD({"W": np.zeros(3)}, lr=0.1)
    opt.lr = 0.05
    assert opt.lr == 0.05
    with pytest.raises(ValueError, match="lr >= 0"):
        opt.lr = -1.0


def test_make_optimizer():
    p = {"W": np.zeros(3)}
    assert isinstance(make_optimizer("sgd", p, lr=0.1, momentum=0.9), SGD)
    adam = make_optimizer("Adam", p)
    assert isinstance(adam, Adam) and not adam.decoupled and adam.weight_decay == 0
    adamw = make_optimizer("adamw", p, lr=0.01)
    assert adamw.decoupled and adamw.weight_decay == 0.01 and adamw.name == "adamw"
    assert make_optimizer("adamw", p, weight_decay=0.0).weight_decay == 0.0
    with pytest.raises(ValueError, match="sgd, adam, adamw"):
        make_optimizer("rmsprop", p)
    with pytest.raises(ValueError, match="does not take betas"):
        make_optimizer("sgd", p, lr=0.1, betas=(0.9, 0.99))
    with pytest.raises(ValueError, match="lr"):
        make_optimizer("sgd", p)


# -- checkpoints ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "make",
    [
        lambda p: SGD(p, lr=0.1),
        lambda p: SGD(p, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
        lambda p: SGD(p, lr=0.1, momentum=0.9, dampening=0.2),
        lambda p: Adam(p, lr=0.01, weight_decay=0.1),
        lambda p: Adam(p, lr=0.01, amsgrad=True, decoupled=True, weight_decay=0.1),
    ],
)
def test_state_dict_round_trip_resumes_exactly(make):
    rng = np.random.default_rng(3)
    start = make_params(rng, np.float64)
    grads = grad_sequence(rng, np.float64, 8)

    straight = {k: v.copy() for k, v in start.items()}
    run_ours(make, straight, grads)

    first = {k: v.copy() for k, v in start.items()}
    opt = run_ours(make, first, grads[:4])
    meta, arrays = opt.state_dict()
    meta = json.loads(json.dumps(meta, allow_nan=False))
    saved = {k: v.copy() for k, v in first.items()}
    for v in arrays.values():
        v += 1e-3  # state_dict must hand out copies, not the live buffers
    meta2, arrays = opt.state_dict()
    assert meta2["step"] == 4 and meta2["param_names"] == list(SHAPES)

    resumed = make(saved)
    fresh_meta, _ = resumed.state_dict()
    resumed.load_state_dict(meta, arrays)
    assert resumed.step_count == 4 and resumed.state_dict()[0] == meta
    assert fresh_meta["step"] == 0
    for g in grads[4:]:
        resumed.step(g)
    for k in SHAPES:
        np.testing.assert_array_equal(saved[k], straight[k], err_msg=k)


def test_state_dict_array_names():
    p = {"enc.W_h": np.zeros((2, 2)), "b": np.zeros(2)}
    g = {k: np.ones_like(v) for k, v in p.items()}
    sgd = SGD(p, lr=0.1, momentum=0.9)
    sgd.step(g)
    assert sorted(sgd.state_dict()[1]) == ["momentum.b", "momentum.enc.W_h"]
    assert SGD(p, lr=0.1).state_dict()[1] == {}
    names = sorted(Adam(p, amsgrad=True).state_dict()[1])
    assert names == sorted(
        f"{kind}.{n}" for kind in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq") for n in p
    )


def test_load_state_dict_restores_hyperparameters_and_lr():
    p = {"W": np.zeros(3)}
    a = Adam(p, lr=0.02, betas=(0.5, 0.6), weight_decay=0.3)
    a.step({"W": np.ones(3)})
    b = Adam({"W": np.zeros(3)})
    b.load_state_dict(*a.state_dict())
    assert (b.lr, b.betas, b.weight_decay, b.step_count) == (0.02, (0.5, 0.6), 0.3, 1)


def test_load_state_dict_rejects_mismatches():
    p = {"W": np.zeros(3)}
    sgd = SGD(p, lr=0.1, momentum=0.9)
    sgd.step({"W": np.ones(3)})
    meta, arrays = sgd.state_dict()
    with pytest.raises(CheckpointError, match="'sgd'"):
        Adam({"W": np.zeros(3)}).load_state_dict(meta, arrays)
    with pytest.raises(CheckpointError, match="missing"):
        SGD({"W": np.zeros(3)}, lr=0.1).load_state_dict(meta, {})
    with pytest.raises(CheckpointError, match="shape"):
        SGD({"W": np.zeros(3)}, lr=0.1).load_state_dict(meta, {"momentum.W": np.zeros(4)})
    with pytest.raises(CheckpointError, match="missing: \\['V'\\]"):
        SGD({"W": np.zeros(3), "V": np.zeros(1)}, lr=0.1).load_state_dict(meta, arrays)
    with pytest.raises(CheckpointError, match="momentum"):
        SGD({"W": np.zeros(3)}, lr=0.1).load_state_dict({**meta, "momentum": -1.0}, arrays)
    target = SGD({"W": np.zeros(3)}, lr=0.5)
    with pytest.raises(CheckpointError):
        target.load_state_dict(meta, {"momentum.W": np.zeros(4)})
    assert target.lr == 0.5 and target.momentum == 0.0  # unchanged after a failed load


# -- clipping ---------------------------------------------------------------------------------
def _direct_norm(grads) -> float:
    return float(np.sqrt(sum(np.sum(np.asarray(g, np.float64) ** 2) for g in grads)))


@pytest.mark.parametrize("max_norm", [0.5, 3.0, 1e3])
def test_clip_grad_norm(max_norm):
    rng = np.random.default_rng(4)
    grads = grad_sequence(rng, np.float64, 1)[0]
    before = {k: v.copy() for k, v in grads.items()}
    live = dict(grads)
    norm = clip_grad_norm(grads, max_norm)
    assert norm == pytest.approx(_direct_norm(before.values()), rel=1e-14)
    assert all(grads[k] is live[k] for k in grads)
    after = _direct_norm(grads.values())
    if norm > max_norm:
        assert after == pytest.approx(max_norm, rel=1e-6)
        for k in grads:  # direction kept
            np.testing.assert_allclose(grads[k], before[k] * (max_norm / (norm + 1e-6)))
    else:
        for k in grads:
            np.testing.assert_array_equal(grads[k], before[k])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("max_norm", [1.0, 100.0])
def test_clip_grad_norm_matches_torch(max_norm, dtype):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    grads = list(grad_sequence(rng, dtype, 1)[0].values())
    tgrads = [torch.from_numpy(g.copy()) for g in grads]
    tparams = [torch.zeros(g.shape, dtype=tg.dtype) for g, tg in zip(grads, tgrads)]
    for p, g in zip(tparams, tgrads):
        p.grad = g
    tnorm = float(torch.nn.utils.clip_grad_norm_(tparams, max_norm))
    norm = clip_grad_norm(grads, max_norm)  # a list works as well as a dict
    tol = TOL[dtype]
    assert norm == pytest.approx(tnorm, rel=tol)
    for g, p in zip(grads, tparams):
        np.testing.assert_allclose(g, p.grad.numpy(), rtol=tol, atol=tol)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_clip_grad_norm_non_finite_raises(bad):
    grads = {"W_x": np.ones((2, 2)), "W_h": np.ones(3)}
    grads["W_h"][1] = bad
    with pytest.raises(NonFiniteError, match="exploding") as info:
        clip_grad_norm(grads, 1.0)
    msg = str(info.value)
    assert "--clip" in msg and "learning rate" in msg and "'W_h'" in msg
    assert isinstance(info.value, FloatingPointError)
    assert math.isnan(global_norm(grads)) or math.isinf(global_norm(grads))


def test_norm_does_not_overflow_in_float32():
    grads = [np.full(100, 1e30, dtype=np.float32)]
    norm = clip_grad_norm(grads, 1.0)  # the squares overflow float32; the norm must not
    assert norm == pytest.approx(1e31, rel=1e-6)
    assert _direct_norm(grads) == pytest.approx(1.0, rel=1e-5)


def test_global_norm():
    rng = np.random.default_rng(6)
    grads = grad_sequence(rng, np.float32, 1)[0]
    flat = np.concatenate([g.ravel().astype(np.float64) for g in grads.values()])
    assert global_norm(grads) == pytest.approx(np.linalg.norm(flat), rel=1e-6)
    assert global_norm(iter(grads.values())) == global_norm(grads)
    assert global_norm([]) == 0.0


def test_clip_grad_norm_bad_max_norm():
    with pytest.raises(ValueError, match="max_norm > 0"):
        clip_grad_norm([np.ones(2)], 0.0)
    g = [np.full(4, 1e6)]
    assert clip_grad_norm(g, math.inf) == pytest.approx(2e6)  # measure only
    assert g[0][0] == 1e6


def test_clip_grad_value_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    grads = grad_sequence(rng, np.float64, 1)[0]
    expected = {k: torch.from_numpy(v.copy()) for k, v in grads.items()}
    params = [torch.zeros(v.shape, dtype=torch.float64) for v in expected.values()]
    for p, g in zip(params, expected.values()):
        p.grad = g
    torch.nn.utils.clip_grad_value_(params, 0.5)
    live = dict(grads)
    clip_grad_value(grads, 0.5)
    for k, g in grads.items():
        assert g is live[k]
        np.testing.assert_array_equal(g, expected[k].numpy())
    with pytest.raises(ValueError, match="clip_value"):
        clip_grad_value(grads, -1.0)


# -- schedules --------------------------------------------------------------------------------
def test_step_decay():
    s = StepDecay(1.0, factor=0.5, start_epoch=4)
    assert [s.lr_for_epoch(e) for e in range(1, 7)] == [1, 1, 1, 1, 0.5, 0.25]
    opt = SGD({"W": np.zeros(1)}, lr=123.0)
    assert s.apply(opt, 6) == 0.25 and opt.lr == 0.25
    with pytest.raises(ValueError, match="epoch >= 1"):
        s.lr_for_epoch(0)
    with pytest.raises(ValueError, match="factor"):
        StepDecay(1.0, factor=0.0)


METRICS = [
    5.0,
    4.0,
    4.0,
    3.9999,
    4.1,
    4.2,
    3.0,
    3.0,
    3.1,
    3.2,
    3.3,
    2.0,
    float("nan"),
    2.5,
    2.5,
    2.5,
    2.5,
    2.5,
    2.5,
    2.5,
    2.5,
    2.5,
    2.5,
    2.5,
]


@pytest.mark.parametrize(
    "kw",
    [
        {"factor": 0.5, "patience": 2},
        {"factor": 0.5, "patience": 1, "cooldown": 2, "threshold": 1e-2, "min_lr": 0.2},
        {"factor": 0.1, "patience": 0, "min_lr": 1e-3, "eps": 1e-8},
    ],
)
def test_reduce_on_plateau_matches_torch(kw):
    torch = pytest.importorskip("torch")
    tp = torch.zeros(1, requires_grad=True)
    topt = torch.optim.SGD([tp], lr=1.0)
    tsched = torch.optim.lr_scheduler.ReduceLROnPlateau(topt, mode="min", **kw)
    opt = SGD({"W": np.zeros(1)}, lr=1.0)
    sched = ReduceOnPlateau(**kw)
    for i, metric in enumerate(METRICS):
        topt.step()  # no gradients: only keeps torch from warning about the call order
        before = opt.lr
        tsched.step(metric)
        reduced = sched.step(metric, opt)
        assert opt.lr == topt.param_groups[0]["lr"], f"epoch {i + 1}"
        assert reduced == (opt.lr < before)


def test_reduce_on_plateau_state_round_trip():
    kw = {"factor": 0.5, "patience": 1, "cooldown": 1}
    straight_opt, straight = SGD({"W": np.zeros(1)}, lr=1.0), ReduceOnPlateau(**kw)
    lrs = []
    for m in METRICS:
        straight.step(m, straight_opt)
        lrs.append(straight_opt.lr)

    opt, sched = SGD({"W": np.zeros(1)}, lr=1.0), ReduceOnPlateau(**kw)
    assert json.loads(json.dumps(sched.state_dict(), allow_nan=False))["best"] == "inf"
    for m in METRICS[:9]:
        sched.step(m, opt)
    state = json.loads(json.dumps(sched.state_dict(), allow_nan=False))
    resumed = ReduceOnPlateau()
    resumed.load_state_dict(state)
    assert resumed.state_dict() == sched.state_dict()
    for m, want in zip(METRICS[9:], lrs[9:]):
        resumed.step(m, opt)
        assert opt.lr == want
    with pytest.raises(CheckpointError):
        ReduceOnPlateau().load_state_dict({**state, "patience": -1})
