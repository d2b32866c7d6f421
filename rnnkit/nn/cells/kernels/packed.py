"""The recurrent product ``h_{t-1} @ W_h`` of the compiled time loops, on weights packed once
per sequence.

Every step of a recurrent layer multiplies a few rows (the batch, ``B``) by the same
``(K, N)`` weight matrix.  A BLAS ``gemm`` copies ("packs") that whole matrix into its own
blocked layout on every call and is tuned for large ``B``; at ``B`` = 16-64 NumPy's OpenBLAS
reached 30-60 GFLOP/s where it reaches 100 on square products (one thread, AVX-512).  Here
the matrix is packed once, before the time loop, into panels of ``PW`` columns stored row
after row::

    P[p, k, :] = W[k, p*PW : (p+1)*PW]        (the last panel padded with zeros)

and each step runs a micro-kernel over every panel and every block of ``R`` <= 6 rows:
``R * V`` vector accumulators (``V`` vectors of ``L`` lanes make a panel row), and for each
``k`` one load of the panel row, one broadcast of ``a[r, k]`` per row and ``R * V`` fused
multiply-adds.  The micro-kernel is written in LLVM IR (:func:`_microkernel`) so that the
accumulators stay in registers, which numba's loop vectoriser did not achieve.  The sums run
over ``k`` in order with one rounding per fused multiply-add, as in OpenBLAS.

``L`` is the vector width in lanes: 16 (float32) and 8 (float64) where the CPU has AVX-512,
else 8 and 4 (AVX2 and older); ``V`` = 4 with AVX-512 (24 accumulators of 32 registers),
else 2 (12 of 16).

``RNNKIT_GEMM`` (read at every call) selects the product: ``auto`` (default) packs for
sequences of two steps or more, ``packed`` always, ``blas`` never (:func:`.common.gemm`).
"""

from __future__ import annotations

import os

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from .common import gemm

_CHOICES = ("auto", "packed", "blas")
R = 6  # rows per micro-kernel call


def _avx512() -> bool:
    import llvmlite.binding as llvm

    try:
        return bool(llvm.get_host_cpu_features().get("avx512f", False))
    except RuntimeError:  # features unknown: the narrow kernels are safe everywhere
        return False


AVX512 = _avx512()
LANES = {"float32": 16, "float64": 8} if AVX512 else {"float32": 8, "float64": 4}
V = 4 if AVX512 else 2
PANEL = {k: v * V for k, v in LANES.items()}  # columns per panel


_PANEL_BY_SIZE = {4: PANEL["float32"], 8: PANEL["float64"]}


def panel_width(dtype) -> int:
    """Columns per panel for ``dtype`` (float32 or float64)."""
    return _PANEL_BY_SIZE[np.dtype(dtype).itemsize]


def _microkernel(rows: int):
    """An intrinsic ``mk(A, r0, P, p, C, c_row, c_col)``: ``C[c_row + r, c_col + j] =
    sum_k A[r0 + r, k] * P[p, k, j]`` for ``r < rows`` and the ``PW`` columns ``j`` of panel
    ``p``.  Arrays are C-contiguous; ``K = P.shape[1] >= 1`` and ``A.shape[1] == K``."""

    @intrinsic
    def mk(typingctx, A, r0, P, p, C, c_row, c_col):
        sig = types.void(A, r0, P, p, C, c_row, c_col)

        def codegen(context, builder, sig, args):
            a_ty, _, p_ty, _, c_ty, _, _ = sig.args
            lanes = LANES[str(a_ty.dtype)]
            a_arr = context.make_array(a_ty)(context, builder, args[0])
            p_arr = context.make_array(p_ty)(context, builder, args[2])
            c_arr = context.make_array(c_ty)(context, builder, args[4])
            r0, panel, c_row, c_col = args[1], args[3], args[5], args[6]
            i64, i32 = ir.IntType(64), ir.IntType(32)
            flt = context.get_value_type(a_ty.dtype)
            vec = ir.VectorType(flt, lanes)
            suffix = f"v{lanes}{'f64' if str(a_ty.dtype) == 'float64' else 'f32'}"
            fma = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(vec, [vec, vec, vec]), f"llvm.fma.{suffix}")

            def const(v):
                return ir.Constant(i64, v)

            lda = cgutils.unpack_tuple(builder, a_arr.shape)[1]
            K = cgutils.unpack_tuple(builder, p_arr.shape)[1]
            ldc = cgutils.unpack_tuple(builder, c_arr.shape)[1]
            width = V * lanes
            a0 = builder.gep(a_arr.data, [builder.mul(r0, lda)])
            p0 = builder.gep(p_arr.data, [builder.mul(panel, builder.mul(K, const(width)))])
            entry = builder.basic_block
            loop = builder.append_basic_block("mk.loop")
            done = builder.append_basic_block("mk.done")
            zero = ir.Constant(vec, None)
            builder.branch(loop)

            builder.position_at_end(loop)
            k = builder.phi(i64)
            k.add_incoming(const(0), entry)
            acc = [[builder.phi(vec) for _ in range(V)] for _ in range(rows)]
            for phis in acc:
                for phi in phis:
                    phi.add_incoming(zero, entry)
            row = builder.gep(p0, [builder.mul(k, const(width))])
            w = [builder.load(builder.bitcast(builder.gep(row, [const(v * lanes)]),
                                              vec.as_pointer()), align=4) for v in range(V)]
            splat = ir.Constant(ir.VectorType(i32, lanes), [0] * lanes)
            new = []
            for r in range(rows):
                x = builder.load(builder.gep(a0, [builder.add(builder.mul(const(r), lda), k)]))
                x = builder.insert_element(ir.Constant(vec, ir.Undefined), x, ir.Constant(i32, 0))
                x = builder.shuffle_vector(x, ir.Constant(vec, ir.Undefined), splat)
                new.append([builder.call(fma, [x, w[v], acc[r][v]]) for v in range(V)])
            k1 = builder.add(k, const(1))
            tail = builder.basic_block
            k.add_incoming(k1, tail)
            for r in range(rows):
                for v in range(V):
                    acc[r][v].add_incoming(new[r][v], tail)
            builder.cbranch(builder.icmp_signed("<", k1, K), loop, done)

            builder.position_at_end(done)
            c0 = builder.gep(c_arr.data, [builder.add(builder.mul(c_row, ldc), c_col)])
            for r in range(rows):
                for v in range(V):
                    at = builder.add(builder.mul(const(r), ldc), const(v * lanes))
                    builder.store(new[r][v], builder.bitcast(builder.gep(c0, [at]),
                                                             vec.as_pointer()), align=4)
            return context.get_dummy_value()

        return sig, codegen

    return mk


_mk1, _mk2, _mk3, _mk4, _mk5, _mk6 = (_microkernel(r) for r in range(1, R + 1))


@njit(cache=True, nogil=True)
def _block(A, r0, rows, P, p, C, c_row, c_col):
    if rows == 6:
        _mk6(A, r0, P, p, C, c_row, c_col)
    elif rows == 5:
        _mk5(A, r0, P, p, C, c_row, c_col)
    elif rows == 4:
        _mk4(A, r0, P, p, C, c_row, c_col)
    elif rows == 3:
        _mk3(A, r0, P, p, C, c_row, c_col)
    elif rows == 2:
        _mk2(A, r0, P, p, C, c_row, c_col)
    elif rows == 1:
        _mk1(A, r0, P, p, C, c_row, c_col)


@njit(cache=True, nogil=True)
def _panel(A, P, C, p, tmp):
    """Columns ``p * PW ...`` of ``C = A @ W``; a partial last panel goes through ``tmp``."""
    M, N = C.shape
    width = P.shape[2]
    col = p * width
    whole = col + width <= N
    for r0 in range(0, M, R):
        rows = min(R, M - r0)
        if whole:
            _block(A, r0, rows, P, p, C, r0, col)
        else:
            _block(A, r0, rows, P, p, tmp, 0, 0)
            for r in range(rows):
                for j in range(N - col):
                    C[r0 + r, col + j] = tmp[r, j]


@njit(cache=True, nogil=True)
def gemm_packed(A, P, C):
    """``C = A @ W`` for ``P = pack(W)``: ``A`` (M, K), ``C`` (M, N), C-contiguous, one dtype;
    ``N`` at most ``P.shape[0] * P.shape[2]``."""
    width = P.shape[2]
    tmp = np.empty((R, width), C.dtype)
    for p in range(min(P.shape[0], -(-C.shape[1] // width))):
        _panel(A, P, C, p, tmp)


@njit(cache=True, parallel=True)
def gemm_packed_par(A, P, C):
    """:func:`gemm_packed` with the panels split over numba's threads."""
    width = P.shape[2]
    for p in prange(min(P.shape[0], -(-C.shape[1] // width))):
        _panel(A, P, C, p, np.empty((R, width), C.dtype))


@njit(cache=True, nogil=True)
def product(A, W, P, C, par=False):
    """``C = A @ W``: packed (``P = pack(W)``; the panels over numba's threads where ``par``)
    where ``P`` has panels, else BLAS."""
    if P.shape[0] == 0:
        gemm(A, W, C)
    elif par:
        gemm_packed_par(A, P, C)
    else:
        gemm_packed(A, P, C)


def mode() -> str:
    """What ``RNNKIT_GEMM`` selects: ``auto``, ``packed`` or ``blas``."""
    choice = os.environ.get("RNNKIT_GEMM", "").strip().lower() or "auto"
    if choice not in _CHOICES:
        raise ValueError(f"RNNKIT_GEMM must be 'auto', 'packed' or 'blas', got {choice!r}")
    return choice


def pack(W) -> np.ndarray:
    """``W`` (K, N), float32 or float64, as panels ``(ceil(N / PW), K, PW)`` (see the module
    docstring)."""
    K, N = W.shape
    width = panel_width(W.dtype)
    npan = -(-N // width)
    P = _aligned_zeros((npan, K, width), W.dtype)
    whole = N // width
    P[:whole] = W[:, :whole * width].reshape(K, whole, width).transpose(1, 0, 2)
    if whole < npan:
        P[whole, :, :N - whole * width] = W[:, whole * width:]
    return P


def _aligned_zeros(shape, dtype, align: int = 64) -> np.ndarray:
    """Zeros whose first element sits on an ``align``-byte boundary: a panel row then never
    straddles a cache line (measured up to 1.3x faster at (64, 512) x (512, 2048))."""
    dtype = np.dtype(dtype)
    n = int(np.prod(shape)) * dtype.itemsize
    raw = np.zeros(n + align, np.uint8)
    start = -raw.ctypes.data % align
    return raw[start:start + n].view(dtype).reshape(shape)


def prepare(W, steps: int) -> np.ndarray:
    """The ``P`` that :func:`product` takes for a loop of ``steps`` products with ``W``:
    ``pack(W)``, or an empty array (BLAS) for a single step or under ``RNNKIT_GEMM=blas``."""
    choice = mode()
    if choice == "packed" or (choice == "auto" and steps >= 2):
        return pack(W)
    if W.dtype not in _NONE:
        _NONE[W.dtype] = np.zeros((0, 1, 1), W.dtype)
    return _NONE[W.dtype]


_NONE: dict = {}  # the empty P of each dtype
