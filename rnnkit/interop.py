"""Exchange weights with ``torch.nn.RNN``, ``torch.nn.GRU`` and ``torch.nn.LSTM``.

PyTorch is imported inside the functions that need it, only when they are called:
``import rnnkit.interop`` needs NumPy alone.

Layout, per layer ``l`` and direction (PyTorch keys end in ``_l{l}`` or ``_l{l}_reverse``)::

    W_x (D, G*H) = weight_ih.T            W_h (H, G*H) = weight_hh.T
    b   (G*H)    = bias_ih + bias_hh      gates in the same order: LSTM i, f, g, o; GRU r, z, n

except the ``n`` block of the GRU, where ``r`` multiplies the recurrent bias
(``n = tanh(x W_xn + b_in + r * (h W_hn + b_hn))``), so the two biases cannot be summed:
``b[n] = bias_ih[n]`` and ``b_hn = bias_hh[n]``.  Going from rnnkit to PyTorch, ``b`` goes into
``bias_ih`` and ``bias_hh`` is zero (the GRU's ``bias_hh[n]`` is ``b_hn``), so a round trip
rnnkit -> PyTorch -> rnnkit gives back exactly the same arrays.  The state layout is the same
on both sides: ``h`` (L * dirs, B, H), and ``(h, c)`` for the LSTM.

What cannot be converted raises :class:`~rnnkit.errors.ConfigError` (a ``ValueError``):
peephole LSTMs and GRUs with ``reset_after=False`` (PyTorch has neither).  A projection LSTM
(:class:`~rnnkit.nn.lstmp.LSTMP`) is ``torch.nn.LSTM(proj_size=P)``, with
``W_hr (H, P) = weight_hr.T`` and ``W_h (P, 4H) = weight_hh.T``; it converts both ways.
A PyTorch module built with ``bias=False`` converts with ``b = 0``; pitfall: rnnkit's ``b`` is
still a parameter, so training moves it away from zero, and such a layer cannot go back into a
bias-free PyTorch module.

>>> import numpy as np, torch
>>> from rnnkit.nn.recurrent import LSTM
>>> lstm = LSTM(3, 4, num_layers=2, dtype="float64", rng=0)
>>> module = to_torch(lstm)                  # torch.nn.LSTM(3, 4, 2, batch_first=True, ...)
>>> x = np.random.default_rng(0).standard_normal((2, 5, 3))
>>> out, (h, c), cache = lstm.forward(x)
>>> ref, (h_ref, c_ref) = module(torch.from_numpy(x))
>>> float(abs(out - ref.detach().numpy()).max()) < 1e-12
True
>>> torch_state_dict(lstm)["weight_ih_l0"].shape    # (4H, D), as in PyTorch
(16, 3)
>>> back = from_torch(module)
>>> all(np.array_equal(back.parameters()[k], v) for k, v in lstm.parameters().items())
True
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from .checks import check_array
from .errors import ConfigError, ShapeError
from .nn.cells.activations import gate_slice
from .nn.lstmp import LSTMP
from .nn.recurrent import GRU, LSTM, RNN, Recurrent

if TYPE_CHECKING:  # pragma: no cover
    import torch

_CLASSES = {"rnn": RNN, "gru": GRU, "lstm": LSTM}
_TORCH_NAMES = {"rnn": "RNN", "gru": "GRU", "lstm": "LSTM"}
_DIRS = ("fwd", "bwd")


def _suffix(layer: int, d: int) -> str:
    return f"_l{layer}" + ("_reverse" if d == 1 else "")


def _check_convertible(layer: Recurrent) -> None:
    if not isinstance(layer, Recurrent):
        raise ConfigError(f"interop: expected an rnnkit RNN, GRU or LSTM, got "
                          f"{type(layer).__name__}")
    cfg = layer.cfg
    if cfg.cell == "lstm" and cfg.peephole:
        raise ConfigError("interop: a peephole LSTM has no PyTorch equivalent "
                          "(torch.nn.LSTM has no peephole weights)")
    if cfg.cell == "gru" and not cfg.reset_after:
        raise ConfigError("interop: GRU(reset_after=False) has no PyTorch equivalent "
                          "(torch.nn.GRU applies the reset gate after the recurrent multiply); "
                          "use reset_after=True")


def _numpy(value) -> np.ndarray:
    """A NumPy array from a NumPy array or a torch tensor (duck-typed: no torch import)."""
    if hasattr(value, "detach"):
        value = value.detach().cpu()
        if value.is_floating_point() and value.element_size() < 4:
            value = value.double()  # float16 / bfloat16 have no (or no exact) NumPy twin
        return value.numpy()
    return np.asarray(value)


# -- NumPy <-> PyTorch key layout ---------------------------------------------------------
def torch_state_dict(layer: Recurrent) -> dict[str, np.ndarray]:
    """The weights of ``layer`` as ``{PyTorch key: array}`` (new arrays, the layer's dtype).

    Keys and order as in ``torch.nn.LSTM(...).state_dict()``: per layer and direction
    ``weight_ih_l{k}[_reverse]`` (G*H, D), ``weight_hh`` (G*H, H), ``bias_ih``, ``bias_hh``
    (G*H,).  Load it with ``module.load_state_dict({k: torch.from_numpy(v) ...})``.
    """
    _check_convertible(layer)
    H = layer.cfg.hidden_size
    out: dict[str, np.ndarray] = {}
    for k, row in enumerate(layer.dirs):
        for d, unit in enumerate(row):
            p, s = unit.param, _suffix(k, d)
            out["weight_ih" + s] = np.ascontiguousarray(p["W_x"].T)  # (G*H, D)
            out["weight_hh" + s] = np.ascontiguousarray(p["W_h"].T)  # (G*H, H)
            out["bias_ih" + s] = p["b"].copy()
            bias_hh = np.zeros_like(p["b"])  # (G*H,)
            if layer.cfg.cell == "gru":
                bias_hh[gate_slice("gru", "n", H)] = p["b_hn"]
            out["bias_hh" + s] = bias_hh
            if "W_hr" in p:
                out["weight_hr" + s] = np.ascontiguousarray(p["W_hr"].T)  # (P, H)
    return out


def load_torch_state_dict(layer: Recurrent, state_dict: Mapping) -> None:
    """Copy PyTorch-layout weights (NumPy arrays or tensors) into ``layer`` in place.

    The keys must be exactly those of :func:`torch_state_dict`, or the same without any
    ``bias_*`` key (a ``bias=False`` module: ``b`` and ``b_hn`` become zero).  Everything is
    checked before anything is written, so a failed load leaves the layer unchanged.
    """
    _check_convertible(layer)
    cfg = layer.cfg
    H = cfg.hidden_size
    expected = torch_state_dict(layer)
    given = set(state_dict)
    weights_only = {k for k in expected if not k.startswith("bias_")}
    if given != set(expected) and given != weights_only:
        missing = sorted(set(expected) - given)
        unexpected = sorted(given - set(expected))
        raise ShapeError(
            f"interop: the state dict does not match {type(layer).__name__}(input_size="
            f"{cfg.input_size}, hidden_size={H}, num_layers={cfg.num_layers}, bidirectional="
            f"{cfg.bidirectional}) (missing: {missing[:5]}, unexpected: {unexpected[:5]})"
        )
    arrays = {}
    for key, like in expected.items():
        value = state_dict[key] if key in given else np.zeros_like(like)
        # in the layer's dtype, so that a float32 module loads into float64 without rounding
        arrays[key] = check_array("interop", key, _numpy(value), like.shape, dtype=like.dtype)
    new = {}
    n = gate_slice("gru", "n", H) if cfg.cell == "gru" else None
    for k, row in enumerate(layer.dirs):
        for d in range(len(row)):
            s, prefix = _suffix(k, d), f"layers.{k}.{_DIRS[d]}."
            bias_ih, bias_hh = arrays["bias_ih" + s], arrays["bias_hh" + s]
            b = bias_ih + bias_hh  # (G*H,)
            new[prefix + "W_x"] = arrays["weight_ih" + s].T
            new[prefix + "W_h"] = arrays["weight_hh" + s].T
            if n is not None:
                b[n] = bias_ih[n]
                new[prefix + "b_hn"] = bias_hh[n]
            new[prefix + "b"] = b
            if "weight_hr" + s in arrays:
                new[prefix + "W_hr"] = arrays["weight_hr" + s].T
    params = layer.parameters()
    for key, value in new.items():
        params[key][...] = value  # casts to the layer's dtype


def _torch_params(module) -> dict[str, np.ndarray]:
    return {k: _numpy(v) for k, v in module.state_dict().items()}


def _check_torch_module(module):
    import torch

    for cell, name in _TORCH_NAMES.items():  # noqa: B007 -- the cell found is returned
        if isinstance(module, getattr(torch.nn, name)):
            break
    else:
        raise ConfigError(f"interop: expected a torch.nn.RNN, GRU or LSTM, got "
                          f"{type(module).__name__}")
    return cell


# -- modules ------------------------------------------------------------------------------
def to_torch(layer: Recurrent) -> torch.nn.RNNBase:
    """A new ``torch.nn.RNN``/``GRU``/``LSTM`` (``batch_first=True``) computing what ``layer``
    computes: same sizes, layers, direction, dropout, nonlinearity, dtype, train/eval mode and
    weights.  The module is built without running PyTorch's random initialisation, so the
    global torch random state is left untouched."""
    import torch

    _check_convertible(layer)
    cfg = layer.cfg
    klass = getattr(torch.nn, _TORCH_NAMES[cfg.cell])
    kwargs = {"nonlinearity": cfg.nonlinearity} if cfg.cell == "rnn" else {}
    if isinstance(layer, LSTMP):
        kwargs["proj_size"] = cfg.proj_size
    dtype = {"float32": torch.float32, "float64": torch.float64}[cfg.dtype]
    module = klass(cfg.input_size, cfg.hidden_size, cfg.num_layers, bias=True,
                   batch_first=True, dropout=cfg.dropout, bidirectional=cfg.bidirectional,
                   dtype=dtype, device="meta", **kwargs)
    module = module.to_empty(device="cpu")
    module.load_state_dict({k: torch.from_numpy(v) for k, v in torch_state_dict(layer).items()})
    module.train(layer.training)
    return module


def from_torch(module: torch.nn.RNNBase, dtype=None, rng=None) -> Recurrent:
    """A new rnnkit layer with the configuration and weights of a PyTorch RNN, GRU or LSTM.

    ``dtype`` defaults to the module's (float32 or float64; pass one for other dtypes).
    ``rng`` is the generator for the layer's dropout masks.  rnnkit layers are batch-first
    whatever the module's ``batch_first``; the weights do not depend on it.
    """
    cell = _check_torch_module(module)
    if dtype is None:
        dtype = str(module.weight_ih_l0.dtype).removeprefix("torch.")
        if dtype not in ("float32", "float64"):
            raise ConfigError(f"interop: the module's dtype is {dtype}; pass dtype='float32' "
                              "or dtype='float64'")
    kwargs = {"nonlinearity": module.nonlinearity} if cell == "rnn" else {}
    klass = _CLASSES[cell]
    if getattr(module, "proj_size", 0) > 0:
        klass, kwargs["proj_size"] = LSTMP, module.proj_size
    layer = klass(module.input_size, module.hidden_size, module.num_layers,
                           bidirectional=module.bidirectional, dropout=float(module.dropout),
                           dtype=dtype, rng=rng, init="pytorch", **kwargs)
    load_torch_state_dict(layer, _torch_params(module))
    layer.train(module.training)
    return layer


def torch_grads_to_rnnkit(module: torch.nn.RNNBase) -> dict[str, np.ndarray]:
    """The ``.grad`` of a PyTorch module's weights under the names of ``layer.grads()``.

    ``W_x`` gets ``weight_ih.grad.T``, ``W_h`` gets ``weight_hh.grad.T`` and ``b`` gets
    ``bias_ih.grad`` (equal to ``bias_hh.grad`` wherever the two biases are summed); the GRU's
    ``b_hn`` gets ``bias_hh.grad[n]``.  A weight without a gradient gives zeros; a ``bias=False``
    module gives no ``b`` entries.
    """
    import torch

    cell = _check_torch_module(module)
    H = module.hidden_size
    out: dict[str, np.ndarray] = {}
    for k in range(module.num_layers):
        for d in range(2 if module.bidirectional else 1):
            s, prefix = _suffix(k, d), f"layers.{k}.{_DIRS[d]}."

            def grad(name, s=s):
                w = getattr(module, name + s)
                g = torch.zeros_like(w) if w.grad is None else w.grad
                return _numpy(g).copy()  # not a view the next backward would change

            out[prefix + "W_x"] = np.ascontiguousarray(grad("weight_ih").T)  # (D, G*H)
            out[prefix + "W_h"] = np.ascontiguousarray(grad("weight_hh").T)  # (H, G*H)
            if getattr(module, "proj_size", 0) > 0:
                out[prefix + "W_hr"] = np.ascontiguousarray(grad("weight_hr").T)  # (H, P)
            if module.bias:
                out[prefix + "b"] = grad("bias_ih")
                if cell == "gru":
                    out[prefix + "b_hn"] = grad("bias_hh")[gate_slice("gru", "n", H)]
    return out
