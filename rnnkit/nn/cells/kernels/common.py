"""Argument preparation shared by the compiled kernels: every array they receive is
C-contiguous and of the layer's dtype, so each kernel compiles once per dtype."""

from __future__ import annotations

import numba
import numpy as np
import scipy.linalg.cython_blas  # noqa: F401  (the BLAS numba's np.dot calls)

from ..._blas import rescan

rescan()  # so that blas_threads also sets SciPy's OpenBLAS

PARALLEL_MIN = 1 << 15  # B * H from which the element-wise passes are split over the rows
PY_LOOP_MIN = 1 << 14  # B * H from which the step loop runs in Python with NumPy's BLAS


def as_c(a, dt):
    """``a`` itself when it already is C-contiguous of dtype ``dt``, else a copy that is."""
    return np.ascontiguousarray(a, dtype=dt)


def mask_rows(mask, T: int, B: int):
    """The (T, B, 1) mask as (T, B) booleans; all True (one row) without one."""
    if mask is None:
        return np.ones((1, B), np.bool_)
    return np.ascontiguousarray(mask.reshape(T, B), dtype=np.bool_)


def row_chunks(B: int, H: int):
    """Row boundaries of the parallel element-wise passes: ``[0, B]`` (one serial pass) below
    ``PARALLEL_MIN`` or with one numba thread, else one chunk of rows per thread."""
    n = min(B, numba.get_num_threads()) if B * H >= PARALLEL_MIN else 1
    if n == 1:
        return np.array([0, B], np.int64)
    return (np.arange(n + 1) * B // n).astype(np.int64)


def carried(grad, B: int, H: int, dt):
    """The gradient carried back through the loop, as a fresh (B, H) array: a copy of
    ``grad`` (the gradient of the final state), or zeros where it is None."""
    if grad is None:
        return np.zeros((B, H), dt)
    return np.array(grad, dtype=dt, order="C")
