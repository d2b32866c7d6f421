"""rnnkit.nn.cells.kernels against the NumPy cells, and the switch between them
(rnnkit.nn.cells.dispatch).

The compiled kernels must give the NumPy reference's outputs, states and gradients to within
rounding (1e-12 in float64, 1e-6 in float32, relative to the largest value), for every cell
variant, with lengths, in both directions, stacked, for training, evaluation (no-grad) and
generation (step), and on every internal path: the compiled step loop, the Python step loop
of large blocks, and the element-wise passes split over the rows (prange).
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import CELLS
from rnnkit.nn.cells import dispatch
from rnnkit.nn.recurrent import make_recurrent

pytest.importorskip("numba")
pytest.importorskip("scipy")

from rnnkit.nn.cells import kernels  # noqa: E402
from rnnkit.nn.cells.kernels import (
    common,  # noqa: E402
    packed,  # noqa: E402
)
from rnnkit.nn.cells.kernels import gru as kgru  # noqa: E402
from rnnkit.nn.cells.kernels import lstm as klstm  # noqa: E402
from rnnkit.nn.cells.kernels import rnn as krnn  # noqa: E402

TOL = {"float64": 1e-12, "float32": 1e-6}
B, T, D, H = 3, 5, 3, 4


def _layer(cell, opts, dtype, num_layers=2, bidirectional=False, seed=0):
    layer = make_recurrent(cell, D, H, num_layers, bidirectional=bidirectional, dtype=dtype,
                           rng=seed, **opts)
    rng = np.random.default_rng(seed + 1)
    for p in layer.parameters().values():
        p[...] = rng.uniform(-0.8, 0.8, p.shape)
    return layer


def _run(layer, x, lengths, dout, dstate, backend, monkeypatch):
    """Everything a training pass, an evaluation pass and two generation steps produce."""
    monkeypatch.setenv("RNNKIT_KERNELS", backend)
    layer.zero_grad()
    out, state, cache = layer.forward(x, None, lengths)
    dx, ds0 = layer.backward(dout, cache, dstate)
    got = [out, *_arrays(state), dx, *_arrays(ds0), *(g.copy() for g in layer.grads().values())]
    out2, _, none = layer.forward(x, None, lengths, grad=False)
    assert none is None
    got.append(out2)
    if not layer.cfg.bidirectional:
        s = layer.initial_state(B)
        for t in range(2):
            o, s = layer.step(x[:, t], s)
            got.append(o)
    return got


def _arrays(state) -> list:
    return list(state) if isinstance(state, tuple) else [state]


def _agree(a, b, dtype):
    for u, v in zip(a, b, strict=True):
        assert u.dtype == v.dtype == np.dtype(dtype)
        scale = max(1.0, float(np.abs(u).max()))
        assert float(np.abs(u - v).max()) <= TOL[dtype] * scale


def _case(layer, dtype, rng):
    x = rng.standard_normal((B, T, D)).astype(dtype)
    dout = rng.standard_normal((B, T, layer.output_size)).astype(dtype)
    s = layer.initial_state(B)
    dstate = type(s)(*(rng.standard_normal(a.shape).astype(dtype) for a in s)) \
        if isinstance(s, tuple) else rng.standard_normal(s.shape).astype(dtype)
    return x, dout, dstate


@pytest.mark.parametrize("gemm", ["packed", "blas"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("lengths", [None, [5, 2, 4]], ids=["equal", "lengths"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("cell, opts", CELLS)
def test_compiled_equals_numpy(cell, opts, bidirectional, lengths, dtype, gemm, monkeypatch):
    """Both recurrent products (packed weights, and BLAS) in every case."""
    monkeypatch.setenv("RNNKIT_GEMM", gemm)
    layer = _layer(cell, opts, dtype, bidirectional=bidirectional)
    x, dout, dstate = _case(layer, dtype, np.random.default_rng(3))
    want = _run(layer, x, lengths, dout, dstate, "numpy", monkeypatch)
    got = _run(layer, x, lengths, dout, dstate, "numba", monkeypatch)
    _agree(got, want, dtype)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("cell, opts", [("lstm", {}), ("gru", {}),
                                        ("gru", {"reset_after": False}), ("rnn", {})])
def test_packed_product_in_the_loops_at_panel_sizes(cell, opts, dtype, monkeypatch):
    """Sizes where the packed product has whole panels, a partial one and a partial block of
    rows (B 13 = 6 + 6 + 1), forward and backward, against the NumPy cells."""
    monkeypatch.setenv("RNNKIT_GEMM", "auto")
    layer = make_recurrent(cell, 5, 40, 1, dtype=dtype, rng=0, **opts)
    rng = np.random.default_rng(6)
    x = rng.standard_normal((13, 7, 5)).astype(dtype)
    dout = rng.standard_normal((13, 7, 40)).astype(dtype)
    runs = []
    for backend in ("numpy", "numba"):
        monkeypatch.setenv("RNNKIT_KERNELS", backend)
        layer.zero_grad()
        out, _, cache = layer.forward(x, None, [7] * 6 + [4] * 7)
        dx, _ = layer.backward(dout, cache)
        runs.append([out, dx, *(g.copy() for g in layer.grads().values())])
    _agree(runs[1], runs[0], dtype)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("cell, opts", CELLS)
def test_python_loop_and_parallel_rows_equal_numpy(cell, opts, dtype, monkeypatch):
    """The paths taken at large B * H, forced at a small size: the step loop in Python
    (NumPy's BLAS), and the element-wise passes split over the rows with prange together with
    the packed product split over its panels."""
    layer = _layer(cell, opts, dtype, bidirectional=True)
    x, dout, dstate = _case(layer, dtype, np.random.default_rng(4))
    lengths = [5, 2, 4]
    want = _run(layer, x, lengths, dout, dstate, "numpy", monkeypatch)
    monkeypatch.setattr(common, "PARALLEL_MIN", 0)
    monkeypatch.setattr(common, "PRODUCT_PARALLEL_MIN", 0)
    if common.row_chunks(B, H).size < 3:
        pytest.skip("numba runs one thread here: no parallel split")
    for py_loop in (0, 10**9):
        for mod in (klstm, kgru, krnn):
            monkeypatch.setattr(mod, "PY_LOOP_MIN", py_loop)
        _agree(_run(layer, x, lengths, dout, dstate, "numba", monkeypatch), want, dtype)


@pytest.mark.parametrize("cell, opts", CELLS[::2])
def test_either_backward_takes_either_forwards_cache(cell, opts, monkeypatch):
    """Both paths build the same cache, so the backward may run on the other one."""
    layer = _layer(cell, opts, "float64")
    x, dout, _ = _case(layer, "float64", np.random.default_rng(5))
    results = []
    for fwd, bwd in (("numpy", "numpy"), ("numba", "numpy"), ("numpy", "numba")):
        monkeypatch.setenv("RNNKIT_KERNELS", fwd)
        out, _, cache = layer.forward(x, None, [5, 3, 4])
        monkeypatch.setenv("RNNKIT_KERNELS", bwd)
        layer.zero_grad()
        dx, _ = layer.backward(dout, cache)
        results.append([out, dx, *(g.copy() for g in layer.grads().values())])
    for other in results[1:]:
        _agree(other, results[0], "float64")


def test_switch(monkeypatch):
    from rnnkit.nn.cells import gru, lstm, rnn

    monkeypatch.setenv("RNNKIT_KERNELS", "numpy")
    assert dispatch.backend() == "numpy"
    assert dispatch.cell_module("lstm") is lstm and dispatch.cell_module("rnn") is rnn
    for value in ("numba", "auto", "", " Numba "):
        monkeypatch.setenv("RNNKIT_KERNELS", value)
        assert dispatch.backend() == "numba"
        assert dispatch.cell_module("lstm", np.float64) is klstm
        assert dispatch.cell_module("gru", reset_after=True) is kgru
        assert dispatch.cell_module("gru", reset_after=False) is kgru
        assert dispatch.cell_module("lstm", np.float16) is lstm
        assert dispatch.cell_module("gru", np.float16, reset_after=False) is gru
    monkeypatch.delenv("RNNKIT_KERNELS")
    assert dispatch.backend() == "numba"
    monkeypatch.setenv("RNNKIT_KERNELS", "fast")
    with pytest.raises(ValueError, match="RNNKIT_KERNELS must be 'auto', 'numba' or 'numpy', "
                                         "got 'fast'"):
        dispatch.backend()


def test_without_numba_auto_falls_back_and_numba_is_an_error(monkeypatch):
    from rnnkit.nn.cells import lstm

    monkeypatch.setattr(dispatch, "_numba_ok", False)
    monkeypatch.setenv("RNNKIT_KERNELS", "auto")
    assert dispatch.cell_module("lstm") is lstm
    monkeypatch.setenv("RNNKIT_KERNELS", "numba")
    with pytest.raises(ValueError, match="numba and scipy must be installed"):
        dispatch.backend()


def test_kernels_are_cached_on_disk():
    """``cache=True`` on every compiled function: a new process loads them instead of
    compiling again."""
    jitted = [f for mod in (klstm, kgru, krnn, packed) for f in vars(mod).values()
              if hasattr(f, "py_func")]
    assert len(jitted) >= 21
    for f in jitted:
        assert f._cache.__class__.__name__ == "FunctionCache", f.__name__
    assert kernels.__doc__


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gemm_in_compiled_code_equals_numpy(dtype):
    """The recurrent product of the kernels (NumPy's own BLAS where it can be linked, else
    numba's np.dot), on the shapes a step uses and on a view that is not C-contiguous."""
    from numba import njit

    @njit
    def product(a, b, out):
        common.gemm(a, b, out)

    rng = np.random.default_rng(0)
    for M, K, N in ((1, 3, 12), (20, 65, 260), (7, 1, 5)):
        a, b = rng.standard_normal((M, K)).astype(dtype), rng.standard_normal((K, N)).astype(dtype)
        out = np.full((M, N), np.nan, dtype)
        product(a, b, out)
        np.testing.assert_allclose(out, a @ b, rtol=1e-5 if dtype == "float32" else 1e-12)
    wide = rng.standard_normal((6, 10)).astype(dtype)
    out = np.empty((6, 4), dtype)
    product(wide, np.ascontiguousarray(wide[:, :4].T @ wide[:, :4]), out)  # C-contiguous
    product(wide[:, ::2][:, :4], np.eye(4, dtype=dtype), out)  # a strided view: np.dot
    np.testing.assert_allclose(out, wide[:, ::2][:, :4], rtol=1e-6)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_packed_product_equals_numpy(dtype):
    """pack() lays the panels out as documented, and product() on them gives ``a @ W`` for
    every remainder of rows (1-6) and of columns, and for K = 1; an empty P means BLAS."""
    rng = np.random.default_rng(0)
    width = packed.panel_width(dtype)
    W = rng.standard_normal((9, 2 * width + 3)).astype(dtype)
    P = packed.pack(W)
    assert P.shape == (3, 9, width) and P.ctypes.data % 64 == 0
    np.testing.assert_array_equal(P[1, 4], W[4, width:2 * width])
    np.testing.assert_array_equal(P[2, :, :3], W[:, 2 * width:])
    assert not P[2, :, 3:].any()
    tol = 1e-5 if dtype == "float32" else 1e-13
    for M, K, N in ((1, 1, 1), (5, 7, width), (7, 13, 2 * width + 5), (13, 64, 3 * width),
                    (20, 33, 4 * width - 1), (6, 3, 1)):
        a, W = (rng.standard_normal(s).astype(dtype) for s in ((M, K), (K, N)))
        want = a.astype(np.float64) @ W.astype(np.float64)
        for P in (packed.pack(W), packed.prepare(W, 1)):
            out = np.full((M, N), np.nan, dtype)
            packed.product(a, W, P, out)
            assert np.abs(out - want).max() <= tol * max(1.0, np.abs(want).max()), (M, K, N)


def test_packed_product_over_threads_equals_one_thread():
    """The panels split over numba's threads give the same bits as one thread."""
    rng = np.random.default_rng(1)
    for dtype in ("float32", "float64"):
        width = packed.panel_width(dtype)
        a = rng.standard_normal((13, 40)).astype(dtype)
        W = rng.standard_normal((40, 5 * width + 7)).astype(dtype)
        P = packed.pack(W)
        one, many = (np.full((13, W.shape[1]), np.nan, dtype) for _ in range(2))
        packed.product(a, W, P, one, False)
        packed.product(a, W, P, many, True)
        np.testing.assert_array_equal(many, one)


def test_gemm_switch(monkeypatch):
    W = np.ones((4, 8), np.float32)
    monkeypatch.delenv("RNNKIT_GEMM", raising=False)
    assert packed.prepare(W, 2).shape[0] == 1 and packed.prepare(W, 1).shape[0] == 0
    monkeypatch.setenv("RNNKIT_GEMM", " Packed ")
    assert packed.prepare(W, 1).shape[0] == 1
    monkeypatch.setenv("RNNKIT_GEMM", "blas")
    assert packed.prepare(W, 100).shape[0] == 0
    monkeypatch.setenv("RNNKIT_GEMM", "mkl")
    with pytest.raises(ValueError, match="RNNKIT_GEMM must be 'auto', 'packed' or 'blas', "
                                         "got 'mkl'"):
        packed.prepare(W, 2)
