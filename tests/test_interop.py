"""rnnkit.interop, and every sequence layer checked against PyTorch with the same weights."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from torch_compare import (
    ATOL,
    assert_matches_torch,
    max_abs_diffs,
    random_case,
    run_rnnkit,
    run_torch,
)

from rnnkit.errors import ConfigError, ShapeError
from rnnkit.interop import (
    from_torch,
    load_torch_state_dict,
    to_torch,
    torch_grads_to_rnnkit,
    torch_state_dict,
)
from rnnkit.nn.recurrent import GRU, LSTM, RNN, make_recurrent

B, T, D, H = 3, 6, 4, 5
CELLS = {
    "rnn-tanh": ("rnn", {"nonlinearity": "tanh"}),
    "rnn-relu": ("rnn", {"nonlinearity": "relu"}),
    "gru": ("gru", {}),
    "lstm": ("lstm", {}),
}
LENGTHS = {"equal": None, "variable": [4, 6, 1], "all-short": [5, 2, 3]}
TORCH_DTYPES = {"float32": torch.float32, "float64": torch.float64}


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny problems: PyTorch's thread pool only costs time (10x on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make(cell: str, num_layers=1, bidirectional=False, dtype="float64", seed=0, **kw):
    name, opts = CELLS[cell]
    return make_recurrent(name, D, H, num_layers, bidirectional=bidirectional, dtype=dtype,
                          rng=np.random.default_rng(seed), init="pytorch", **opts, **kw)


def randomize_torch(module, rng: np.random.Generator):
    """Fill every weight from ``rng`` (PyTorch's own init would use its global generator)."""
    with torch.no_grad():
        for p in module.parameters():
            a = 1.0 / np.sqrt(module.hidden_size)
            p.copy_(torch.from_numpy(rng.uniform(-a, a, tuple(p.shape))))
    return module


# -- the same numbers as PyTorch ----------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("lengths", list(LENGTHS.values()), ids=list(LENGTHS))
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("num_layers", [1, 2, 3])
@pytest.mark.parametrize("cell", list(CELLS))
def test_matches_torch(cell, num_layers, bidirectional, lengths, dtype, kernels):
    rng = np.random.default_rng(1234)
    layer = make(cell, num_layers, bidirectional, dtype, seed=7)
    x, state, dout, dstate = random_case(layer, rng, B, T)
    assert_matches_torch(layer, x, state, lengths, dout, dstate)


@pytest.mark.parametrize("cell", list(CELLS))
def test_matches_torch_defaults_and_one_row(cell, kernels):
    """No initial state, no final-state gradient; B = 1 (time-major views of one row)."""
    rng = np.random.default_rng(5)
    layer = make(cell, 2, True, seed=3)
    x, _, dout, _ = random_case(layer, rng, 1, T)
    assert_matches_torch(layer, x, dout=dout)
    assert_matches_torch(layer, x, lengths=[4], dout=dout)


def test_matches_torch_default_init_and_eval_dropout():
    """rnnkit's own initialisation (LSTM forget bias 1) and dropout, which eval() turns off."""
    rng = np.random.default_rng(11)
    layer = LSTM(D, H, 3, bidirectional=True, dropout=0.5, dtype="float64", rng=rng).eval()
    x, state, dout, dstate = random_case(layer, rng, B, T)
    assert_matches_torch(layer, x, state, [2, 6, 5], dout, dstate)


# -- conversions --------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("cell", list(CELLS))
def test_round_trip_rnnkit_torch_rnnkit(cell, dtype):
    layer = make(cell, 2, True, dtype, dropout=0.25)
    module = to_torch(layer)
    name, opts = CELLS[cell]
    assert type(module) is getattr(torch.nn, name.upper())
    assert module.batch_first and module.bidirectional and module.num_layers == 2
    assert (module.input_size, module.hidden_size, module.dropout) == (D, H, 0.25)
    assert module.weight_hh_l1_reverse.dtype == TORCH_DTYPES[dtype]
    assert module.training
    if name == "rnn":
        assert module.nonlinearity == opts["nonlinearity"]
    back = from_torch(module)
    assert type(back) is type(layer)
    keep = ("cell", "input_size", "hidden_size", "num_layers", "bidirectional", "dropout",
            "nonlinearity", "reset_after", "peephole", "dtype")
    assert {k: back.config()[k] for k in keep} == {k: layer.config()[k] for k in keep}
    assert list(back.parameters()) == list(layer.parameters())
    for k, v in layer.parameters().items():
        assert back.parameters()[k].dtype == v.dtype
        np.testing.assert_array_equal(back.parameters()[k], v, err_msg=k)
    assert not from_torch(to_torch(layer.eval())).training


@pytest.mark.parametrize("lengths", [None, [2, 6, 4]], ids=["equal", "variable"])
@pytest.mark.parametrize("cell", list(CELLS))
def test_from_torch_matches_a_random_module(cell, lengths):
    """Separate, random ``bias_ih`` and ``bias_hh``: the summed and the GRU's split biases."""
    rng = np.random.default_rng(3)
    name, opts = CELLS[cell]
    module = getattr(torch.nn, name.upper())(D, H, 2, bidirectional=True, batch_first=True,
                                             dtype=torch.float64, **opts)
    randomize_torch(module, rng)
    layer = from_torch(module)
    x, state, dout, dstate = random_case(layer, rng, B, T)
    args = (x, state, lengths, dout, dstate)
    diffs = max_abs_diffs(run_rnnkit(layer, *args), run_torch(layer, *args, module=module))
    assert max(diffs.values()) <= ATOL[np.dtype(np.float64)], diffs


def test_from_torch_dtype_and_rng():
    module = torch.nn.GRU(D, H, dtype=torch.float32)
    layer = from_torch(module, dtype="float64", rng=np.random.default_rng(0))
    assert layer.np_dtype == np.float64
    sd = torch_state_dict(layer)
    for k, v in module.state_dict().items():
        if k.startswith("weight"):
            np.testing.assert_array_equal(sd[k], v.numpy().astype(np.float64))
    # the float32 biases are summed in float64: no rounding on the way in
    want = module.bias_ih_l0.detach().double() + module.bias_hh_l0.detach().double()
    n = slice(2 * H, 3 * H)
    np.testing.assert_array_equal(layer.parameters()["layers.0.fwd.b"][: 2 * H],
                                  want[: 2 * H].numpy())
    np.testing.assert_array_equal(layer.parameters()["layers.0.fwd.b_hn"],
                                  module.bias_hh_l0[n].detach().double().numpy())
    with pytest.raises(ConfigError, match="dtype"):
        from_torch(module.to(torch.float16))
    half = from_torch(module.to(torch.bfloat16), dtype="float32")
    assert half.np_dtype == np.float32


def test_state_dict_layout_matches_torch():
    for cell in CELLS:
        layer = make(cell, 3, True)
        module = to_torch(layer)
        sd = torch_state_dict(layer)
        ref = module.state_dict()
        assert list(sd) == list(ref)
        for k, v in sd.items():
            assert v.shape == tuple(ref[k].shape), k
            np.testing.assert_array_equal(v, ref[k].numpy(), err_msg=k)
        module.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})  # strict
    lstm = make("lstm")
    sd = torch_state_dict(lstm)
    np.testing.assert_array_equal(sd["weight_ih_l0"], lstm.parameters()["layers.0.fwd.W_x"].T)
    np.testing.assert_array_equal(sd["bias_hh_l0"], 0)
    gru = make("gru")
    sd = torch_state_dict(gru)
    np.testing.assert_array_equal(sd["bias_hh_l0"][: 2 * H], 0)
    np.testing.assert_array_equal(sd["bias_hh_l0"][2 * H:], gru.parameters()["layers.0.fwd.b_hn"])


def test_load_torch_state_dict_takes_tensors():
    rng = np.random.default_rng(8)
    module = randomize_torch(torch.nn.LSTM(D, H, 2, dtype=torch.float64), rng)
    layer = make("lstm", 2, seed=1)
    load_torch_state_dict(layer, module.state_dict())
    sd = module.state_dict()
    p = layer.parameters()
    np.testing.assert_array_equal(p["layers.1.fwd.W_h"], sd["weight_hh_l1"].numpy().T)
    np.testing.assert_array_equal(p["layers.1.fwd.b"],
                                  (sd["bias_ih_l1"] + sd["bias_hh_l1"]).numpy())


@pytest.mark.parametrize("cell", list(CELLS))
def test_bias_free_module(cell):
    rng = np.random.default_rng(2)
    name, opts = CELLS[cell]
    module = getattr(torch.nn, name.upper())(D, H, 2, bias=False, batch_first=True,
                                             dtype=torch.float64, **opts)
    randomize_torch(module, rng)
    layer = from_torch(module)
    for k, v in layer.parameters().items():
        if k.endswith((".b", ".b_hn")):
            np.testing.assert_array_equal(v, 0, err_msg=k)
    x, state, dout, dstate = random_case(layer, rng, B, T)
    ours = run_rnnkit(layer, x, state, [6, 3, 5], dout, dstate)
    theirs = run_torch(layer, x, state, [6, 3, 5], dout, dstate, module=module)
    assert not any(k.endswith((".b", ".b_hn")) for k in theirs.grads)
    ours.grads = {k: v for k, v in ours.grads.items() if k in theirs.grads}
    diffs = max_abs_diffs(ours, theirs)
    assert max(diffs.values()) <= 1e-10, diffs


def test_torch_grads_without_backward_are_zero():
    grads = torch_grads_to_rnnkit(to_torch(make("gru", 2, True)))
    assert list(grads) == list(make("gru", 2, True).grads())
    assert all(not g.any() for g in grads.values())


# -- what cannot convert ------------------------------------------------------------------
def test_refuses_what_torch_cannot_express():
    with pytest.raises(ConfigError, match="peephole"):
        to_torch(LSTM(D, H, peephole=True, rng=0))
    with pytest.raises(ConfigError, match="reset_after"):
        torch_state_dict(GRU(D, H, reset_after=False, rng=0))
    with pytest.raises(ConfigError, match="torch.nn.RNN, GRU or LSTM"):
        from_torch(torch.nn.Linear(D, H))
    with pytest.raises(ConfigError, match="rnnkit RNN, GRU or LSTM"):
        to_torch(torch.nn.GRU(D, H))


def test_load_rejects_a_mismatch_and_changes_nothing():
    layer = make("rnn-tanh", 2)
    before = layer.state_dict()
    sd = torch_state_dict(make("rnn-tanh", 2, seed=9))
    with pytest.raises(ShapeError, match="missing: .'bias_hh_l1'"):
        load_torch_state_dict(layer, {k: v for k, v in sd.items() if k != "bias_hh_l1"})
    with pytest.raises(ShapeError, match="unexpected: .'weight_ih_l2'"):
        load_torch_state_dict(layer, {**sd, "weight_ih_l2": sd["weight_ih_l1"]})
    with pytest.raises(ShapeError, match=r"expected weight_hh_l1 of shape \(5, 5\), got \(5, 4\)"):
        load_torch_state_dict(layer, {**sd, "weight_hh_l1": np.zeros((H, D))})
    with pytest.raises(ShapeError, match="NaN"):
        load_torch_state_dict(layer, {**sd, "bias_ih_l1": np.full(H, np.nan)})
    with pytest.raises(ShapeError, match="does not match"):
        load_torch_state_dict(layer, torch.nn.RNN(D, H, 1).state_dict())
    for k, v in layer.parameters().items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)


def test_to_torch_leaves_torch_random_state_alone():
    before = torch.random.get_rng_state()
    to_torch(RNN(D, H, 2, rng=0))
    assert torch.equal(before, torch.random.get_rng_state())


def test_import_does_not_import_torch():
    code = "import sys, rnnkit, rnnkit.interop; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "False", done.stdout + done.stderr
