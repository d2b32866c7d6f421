"""Control of the BLAS thread count around the recurrent time loops.

Inside a time loop every multiply is small (``(B, H) @ (H, G*H)``) and runs thousands of times;
a multi-threaded BLAS spends more time waking and synchronising its threads than computing,
and when the cores are busy with anything else it can become ten times slower than one thread.
The big multiplies (input projections, weight gradients, output layer) still use every thread.

Only OpenBLAS (what NumPy's and SciPy's wheels ship) is handled, found among the loaded shared
libraries; every OpenBLAS loaded is set (NumPy's, and SciPy's, which the compiled kernels'
``np.dot`` calls); anywhere else :func:`blas_threads` does nothing.
"""

from __future__ import annotations

import ctypes
import os
from contextlib import contextmanager

_SET = ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
        "openblas_set_num_threads64_", "openblas_set_num_threads")
_GET = ("scipy_openblas_get_num_threads64_", "scipy_openblas_get_num_threads",
        "openblas_get_num_threads64_", "openblas_get_num_threads")
_api = None  # [(set, get), ...] (NumPy's first) or False when unavailable


def rescan() -> None:
    """Look for OpenBLAS libraries again (after one more was loaded)."""
    global _api
    _api = None


def openblas_paths() -> list[str] | None:
    """The files of the OpenBLAS libraries loaded in this process, NumPy's (64-bit integers)
    first; None where the process's mappings cannot be read."""
    try:
        import numpy  # noqa: F401  (loads the BLAS)

        with open("/proc/self/maps") as f:
            paths = sorted({line.split()[-1] for line in f if "openblas" in line.lower()
                            and "/" in line})
    except OSError:
        return None
    return sorted(paths, key=lambda p: "openblas64" not in p)


def _find():
    global _api
    if _api is not None:
        return _api
    found = []
    paths = openblas_paths()
    if paths is None:
        _api = False
        return _api
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        set_ = next((getattr(lib, n) for n in _SET if hasattr(lib, n)), None)
        get_ = next((getattr(lib, n) for n in _GET if hasattr(lib, n)), None)
        if set_ is not None and get_ is not None:
            set_.argtypes, set_.restype = [ctypes.c_int], None
            get_.argtypes, get_.restype = [], ctypes.c_int
            found.append((set_, get_))
    _api = found or False
    return _api


def get_threads() -> int | None:
    """NumPy's BLAS thread count (None where it cannot be controlled)."""
    api = _find()
    return api[0][1]() if api else None


@contextmanager
def blas_threads(n: int):
    """Run the block with ``n`` BLAS threads, restoring the previous count afterwards."""
    api = _find() if os.environ.get("RNNKIT_BLAS_CONTROL", "1") != "0" else False
    if not api:
        yield
        return
    old = [get() for _, get in api]
    if all(k == n for k in old):
        yield
        return
    for set_, _ in api:
        set_(n)
    try:
        yield
    finally:
        for (set_, _), k in zip(api, old):
            set_(k)
