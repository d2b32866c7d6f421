"""Finite-difference gradient checking, shared by every test of a hand-written backward.

The loss is a random linear function of every output, ``loss = sum_k sum(out_k * W_k)``, so
the upstream gradient of each output is a random array ``W_k`` (not all ones, which would hide
transposed or summed-over axes).  Each differentiable array -- inputs, initial states and
parameters -- is perturbed one element at a time by ``+-eps`` in float64 and the central
difference is compared with the analytic gradient::

    rel = max|num - ana| / max(1e-12, max|num| + max|ana|)   <= tol (1e-6)

Usage (one layer; ``cache`` is whatever ``backward`` needs)::

    def fwd(x, h0):
        out, hT, cache = layer.forward(x, h0)
        return (out, hT), cache

    def bwd(douts, cache):
        dx, dh0 = layer.backward(douts[0], cache, douts[1])
        return {"x": dx, "h0": dh0}

    check_module_grads(fwd, bwd, {"x": x, "h0": h0}, layer.parameters(), layer.grads())

Outputs may be one array or a (named) tuple, list or dict of arrays, nested; ``None`` entries
are skipped.  Anything that is not differentiated (lengths, ids, a dropout seed) is closed over
by ``forward_fn``; a forward that draws random numbers must draw the same ones on every call.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

EPS = 1e-6
TOL = 1e-6


def _leaves(obj) -> list[np.ndarray]:
    """The arrays of a nested output, in a fixed order."""
    if obj is None:
        return []
    if isinstance(obj, Mapping):
        return [a for k in obj for a in _leaves(obj[k])]
    if isinstance(obj, (tuple, list)):
        return [a for item in obj for a in _leaves(item)]
    return [np.asarray(obj)]


def _like(obj, leaves):
    """Rebuild the structure of ``obj`` with the arrays taken in order from ``leaves``."""
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return {k: _like(v, leaves) for k, v in obj.items()}
    if isinstance(obj, tuple):
        items = [_like(item, leaves) for item in obj]
        return type(obj)(*items) if hasattr(obj, "_fields") else tuple(items)
    if isinstance(obj, list):
        return [_like(item, leaves) for item in obj]
    return next(leaves)


def rel_error(num: np.ndarray, ana: np.ndarray) -> float:
    """``max|num - ana| / max(1e-12, max|num| + max|ana|)``; 0 for empty arrays."""
    if num.size == 0:
        return 0.0
    scale = max(1e-12, float(np.abs(num).max()) + float(np.abs(ana).max()))
    return float(np.abs(num - ana).max()) / scale


def numeric_grad(f: Callable[[], float], arr: np.ndarray, eps: float) -> np.ndarray:
    """Central differences of the scalar ``f()`` with respect to every element of ``arr``,
    which ``f`` reads (changed in place one element at a time, then restored)."""
    num = np.zeros(arr.shape)
    flat, nflat = arr.reshape(-1), num.reshape(-1)
    assert np.shares_memory(flat, arr) or arr.size == 0
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        up = f()
        flat[i] = old - eps
        down = f()
        flat[i] = old
        nflat[i] = (up - down) / (2 * eps)
    return num


def check_module_grads(
    forward_fn: Callable,
    backward_fn: Callable,
    inputs: Mapping[str, np.ndarray],
    params: Mapping[str, np.ndarray] | None = None,
    grads: Mapping[str, np.ndarray] | None = None,
    *,
    seed: int = 0,
    eps: float = EPS,
    tol: float = TOL,
) -> dict[str, float]:
    """Check ``backward_fn`` against central differences of ``forward_fn``; return the errors.

    ``forward_fn(**inputs) -> (outputs, cache)``.  ``backward_fn(douts, cache) -> dict``
    where ``douts`` has the structure of ``outputs`` and the dict holds the gradient of every
    key of ``inputs``.  ``params`` are the live float64 arrays ``forward_fn`` reads (perturbed
    in place and restored).  Parameter gradients are read from ``grads`` (live arrays that
    ``backward_fn`` accumulates into; zeroed here first) or, if ``grads`` is None, from the
    dict ``backward_fn`` returns, under the parameter's name.

    Also asserts that neither pass modifies its inputs, parameters or upstream gradients, and
    that the outputs are the same on every call (a forward with hidden randomness would fail).
    Raises ``AssertionError`` listing every array whose relative error exceeds ``tol``.
    """
    params = {} if params is None else params
    inputs = {k: np.array(v, dtype=np.float64) for k, v in inputs.items()}  # owned copies
    for name, arr in params.items():
        assert arr.dtype == np.float64, f"parameter {name} must be float64, got {arr.dtype}"
    saved_inputs = {k: v.copy() for k, v in inputs.items()}
    saved_params = {k: v.copy() for k, v in params.items()}
    rng = np.random.default_rng(seed)

    outputs, cache = forward_fn(**inputs)
    out_leaves = [a.copy() for a in _leaves(outputs)]
    assert out_leaves, "forward_fn returned no outputs"
    weights = [rng.standard_normal(a.shape) for a in out_leaves]

    def loss() -> float:
        outs, _ = forward_fn(**inputs)
        return float(sum(np.sum(o * w) for o, w in zip(_leaves(outs), weights)))

    # Analytic gradients.
    if grads is not None:
        for g in grads.values():
            g.fill(0)
    douts = _like(outputs, iter([w.copy() for w in weights]))
    got = backward_fn(douts, cache)
    for w, d in zip(weights, _leaves(douts)):
        assert np.array_equal(w, d), "backward_fn modified the upstream gradient in place"
    for name in inputs:
        assert np.array_equal(inputs[name], saved_inputs[name]), f"forward modified {name}"
    for name in params:
        assert np.array_equal(params[name], saved_params[name]), f"forward modified {name}"
    analytic = {}
    for name in inputs:
        assert name in got, f"backward_fn returned no gradient for input {name!r}"
        analytic[name] = np.asarray(got[name], dtype=np.float64).copy()
    source = got if grads is None else grads
    for name in params:
        assert name in source, f"no gradient for parameter {name!r}"
        analytic[name] = np.asarray(source[name], dtype=np.float64).copy()

    # Same outputs again: the forward is a deterministic function of its arguments.
    again = _leaves(forward_fn(**inputs)[0])
    for a, b in zip(out_leaves, again):
        assert np.array_equal(a, b), "forward_fn is not deterministic (reseed its rng per call)"

    # Central differences, one element at a time.
    errors: dict[str, float] = {}
    for name, arr in [*inputs.items(), *params.items()]:
        num = numeric_grad(loss, arr, eps)
        assert analytic[name].shape == arr.shape, (
            f"gradient of {name} has shape {analytic[name].shape}, expected {arr.shape}"
        )
        errors[name] = rel_error(num, analytic[name])
    bad = {k: v for k, v in errors.items() if not v <= tol}
    listing = ", ".join(f"{k}: {v:.2e}" for k, v in bad.items())
    assert not bad, f"gradient check failed (relative error > {tol:g}): {listing}"
    return errors
