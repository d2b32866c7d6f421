"""The one place that chooses between the NumPy cells and their compiled twins.

``RNNKIT_KERNELS`` (read at every call, so a test or a user can switch it at run time):

``auto`` (default, or unset)
    the compiled kernels of :mod:`rnnkit.nn.cells.kernels` where numba (with SciPy, which
    numba's ``np.dot`` calls) is installed, else NumPy;
``numba``
    the compiled kernels, an error where numba is missing;
``numpy``
    the readable NumPy reference in :mod:`rnnkit.nn.cells`.

Both follow the contract of :mod:`rnnkit.nn.cells` and build the same cache, so a backward
pass may run on either, whichever ran the forward.  numba is imported on the first call that
needs it, never by ``import rnnkit``.
"""

from __future__ import annotations

import importlib.util
import os
from types import ModuleType

import numpy as np

from . import gru, lstm, rnn

_NUMPY = {"rnn": rnn, "gru": gru, "lstm": lstm}
_COMPILED: dict[str, ModuleType] = {}
_CHOICES = ("auto", "numba", "numpy")
_numba_ok: bool | None = None


def numba_available() -> bool:
    """Whether numba and SciPy are installed (looked up, not imported)."""
    global _numba_ok
    if _numba_ok is None:
        _numba_ok = all(importlib.util.find_spec(m) is not None for m in ("numba", "scipy"))
    return _numba_ok


def backend() -> str:
    """``"numba"`` or ``"numpy"``: what ``RNNKIT_KERNELS`` and the installation select."""
    choice = os.environ.get("RNNKIT_KERNELS", "").strip().lower() or "auto"
    if choice not in _CHOICES:
        raise ValueError(f"RNNKIT_KERNELS must be 'auto', 'numba' or 'numpy', got {choice!r}")
    if choice == "numpy":
        return "numpy"
    if numba_available():
        return "numba"
    if choice == "numba":
        raise ValueError("RNNKIT_KERNELS=numba: numba and scipy must be installed")
    return "numpy"


def _compiled(cell: str) -> ModuleType:
    if cell not in _COMPILED:
        from .kernels import gru as kgru
        from .kernels import lstm as klstm
        from .kernels import rnn as krnn

        _COMPILED.update(rnn=krnn, gru=kgru, lstm=klstm)
    return _COMPILED[cell]


def cell_module(cell: str, dtype=np.float32, **options) -> ModuleType:
    """The module whose ``forward``, ``backward`` and ``step`` run ``cell`` ("rnn", "gru",
    "lstm") with ``options`` (:data:`rnnkit.nn.cells.OPTIONS`) on arrays of ``dtype``.

    The compiled kernels cover float32 and float64 and every option of the three cells."""
    if backend() == "numba" and np.dtype(dtype) in (np.float32, np.float64):
        return _compiled(cell)
    return _NUMPY[cell]
