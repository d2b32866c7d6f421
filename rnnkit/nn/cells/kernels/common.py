"""What the compiled kernels share: the matrix product of their time loops (:func:`gemm`)
and argument preparation (every array they receive is C-contiguous and of the layer's dtype,
so each kernel compiles once per dtype).

:func:`gemm` calls the ``cblas_?gemm`` of NumPy's own OpenBLAS, linked by symbol name (so the
kernels stay cacheable).  numba's ``np.dot`` calls SciPy's OpenBLAS instead, which measured
2-3x slower at a recurrent product's shapes (B 20, (650, 2600): 13 against 44 GFLOP/s, one
thread); it remains the fallback where NumPy's BLAS does not export those symbols.
"""

from __future__ import annotations

import ctypes

import numba
import numpy as np
import scipy.linalg.cython_blas  # noqa: F401  (the BLAS numba's np.dot calls)
from numba import types
from numba.extending import overload

from ..._blas import blas_threads, openblas_paths, rescan

rescan()  # so that blas_threads also sets SciPy's OpenBLAS

PARALLEL_MIN = 1 << 15  # B * H from which the element-wise passes are split over the rows
# multiply-adds of a step's product from which, where the element-wise passes are split too,
# the packed product's panels are split over the threads as well
PRODUCT_PARALLEL_MIN = 1 << 24

# NumPy >= 2 wheels ship OpenBLAS with 64-bit integers and these prefixed names.
_CBLAS = {"float32": "scipy_cblas_sgemm64_", "float64": "scipy_cblas_dgemm64_"}
_ROW_MAJOR, _NO_TRANS = 101, 111


def _numpy_blas_path() -> str | None:
    """The file of the loaded OpenBLAS that exports NumPy's ``cblas_?gemm`` names, or None."""
    for path in openblas_paths() or ():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        if all(hasattr(lib, name) for name in _CBLAS.values()):
            return path
    return None


def _link_numpy_blas() -> bool:
    path = _numpy_blas_path()
    if path is None:
        return False
    import llvmlite.binding as llvm

    llvm.load_library_permanently(path)
    return True


NUMPY_BLAS = _link_numpy_blas()
# B * H from which the step loop runs in Python with NumPy's BLAS: only needed without it
PY_LOOP_MIN = 1 << 62 if NUMPY_BLAS else 1 << 14


def gemm(a, b, out):
    """``out = a @ b`` for C-contiguous 2-D arrays of one float dtype, inside compiled code."""
    np.dot(a, b, out)


@overload(gemm, jit_options={"cache": True})
def _gemm(a, b, out):
    arrays = (a, b, out)
    if not (NUMPY_BLAS and str(a.dtype) in _CBLAS and all(x.layout == "C" for x in arrays)
            and all(x.dtype == a.dtype for x in arrays)):
        return lambda a, b, out: np.dot(a, b, out)
    name = _CBLAS[str(a.dtype)]
    i64 = types.int64
    fn = types.ExternalFunction(name, types.void(
        i64, i64, i64, i64, i64, i64, a.dtype, types.voidptr, i64, types.voidptr, i64, a.dtype,
        types.voidptr, i64))
    one, zero = (np.float32(1), np.float32(0)) if str(a.dtype) == "float32" else (1.0, 0.0)

    def impl(a, b, out):
        M, K = a.shape
        N = b.shape[1]
        fn(_ROW_MAJOR, _NO_TRANS, _NO_TRANS, M, N, K, one, a.ctypes, K, b.ctypes, N, zero,
           out.ctypes, N)

    return impl


NO_MASK = np.ones(1, np.bool_)  # the mask argument of an unmasked step (never read)
STEP_BLAS_MIN = 1 << 20  # multiply-adds of one step from which its product is kept on one thread


def run_step(step, args: tuple, work: int) -> None:
    """``step(*args)``, a compiled generation step whose products make ``work`` multiply-adds:
    on one BLAS thread from :data:`STEP_BLAS_MIN` (below, setting the thread count costs more
    than the product)."""
    if work < STEP_BLAS_MIN:
        step(*args)
    else:
        with blas_threads(1):
            step(*args)


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


def split_min() -> int:
    """:data:`PRODUCT_PARALLEL_MIN`, read at each call (a test lowers it)."""
    return PRODUCT_PARALLEL_MIN


def carried(grad, B: int, H: int, dt):
    """The gradient carried back through the loop, as a fresh (B, H) array: a copy of
    ``grad`` (the gradient of the final state), or zeros where it is None."""
    if grad is None:
        return np.zeros((B, H), dt)
    return np.array(grad, dtype=dt, order="C")
