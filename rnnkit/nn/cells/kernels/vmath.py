"""``exp``, ``sigmoid`` and ``tanh`` for the compiled kernels, written so that LLVM vectorises
the loops that call them.

numba turns ``np.exp`` and ``np.tanh`` on scalars into calls of the C library (no SIMD without
Intel's SVML), which costs 20 to 100 ns an element; these straight-line versions compile to
vector instructions instead.  ``exp(x) = 2^k exp(r)`` with ``k = round(x / ln 2)`` and
``|r| <= ln(2) / 2``: ``exp(r)`` by its Taylor polynomial (degree 13 in float64, 7 in float32,
truncation error below half an ulp), ``2^k`` by writing ``k`` into the exponent bits.  ``x`` is
first clamped to the range where ``2^k`` is a normal number, so huge inputs give a huge
finite ``exp`` and the exact limits 0 and 1 of the sigmoid (``tanh``: -1 and 1) after rounding.

``sigmoid(a) = 1 / (1 + exp(-a))`` and ``tanh(a) = 2 / (1 + exp(-2a)) - 1``.  Each function is
typed by its argument: float32 in, float32 arithmetic throughout.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload


@intrinsic
def _bits_as_f64(typingctx, bits):
    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(types.int64), codegen


@intrinsic
def _bits_as_f32(typingctx, bits):
    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.FloatType())

    return types.float32(types.int32), codegen


def _poly(ft, degree):
    """Taylor coefficients of exp, highest first, as constants of type ``ft``."""
    c, out = 1.0, []
    for n in range(degree + 1):
        out.append(c)
        c /= n + 1
    return tuple(ft(v) for v in out[::-1])


# float64: fdlibm's split of ln 2 (k * _LN2_HI64 is exact for |k| < 2^20)
_LO64, _HI64 = -708.0, 709.0
_LOG2E64, _LN2_HI64, _LN2_LO64 = 1.4426950408889634, 6.93147180369123816490e-01, \
    1.90821492927058770002e-10
_C64 = _poly(float, 13)
# float32: Cephes' split of ln 2; the clamp keeps k in [-126, 127]
_f = np.float32
_LO32, _HI32 = _f(-87.3), _f(88.3)
_LOG2E32, _LN2_HI32, _LN2_LO32 = _f(1.44269504088896341), _f(0.693359375), _f(-2.12194440e-4)
_C32 = _poly(_f, 7)
_HALF32, _ONE32, _TWO32 = _f(0.5), _f(1.0), _f(2.0)


@njit(error_model="numpy")
def _exp64(x):
    x = min(max(x, _LO64), _HI64)
    k = np.floor(x * _LOG2E64 + 0.5)
    r = (x - k * _LN2_HI64) - k * _LN2_LO64
    p = _C64[0]
    for c in _C64[1:]:
        p = p * r + c
    return p * _bits_as_f64((np.int64(k) + 1023) << 52)


@njit(error_model="numpy")
def _exp32(x):
    x = min(max(x, _LO32), _HI32)
    k = np.floor(x * _LOG2E32 + _HALF32)
    r = (x - k * _LN2_HI32) - k * _LN2_LO32
    p = _C32[0]
    for c in _C32[1:]:
        p = p * r + c
    return p * _bits_as_f32((np.int32(k) + np.int32(127)) << np.int32(23))


_OPTS = {"error_model": "numpy"}  # float division without Python's zero check: vectorises


def vexp(x):
    """``exp(x)``, vectorisable (see the module docstring)."""
    raise NotImplementedError("compiled code only")


def sigmoid(x):
    """``1 / (1 + exp(-x))``."""
    raise NotImplementedError("compiled code only")


def tanh(x):
    """``2 / (1 + exp(-2x)) - 1``."""
    raise NotImplementedError("compiled code only")


@overload(vexp, jit_options=_OPTS)
def _vexp(x):
    if x == types.float32:
        return lambda x: _exp32(x)
    return lambda x: _exp64(x)


@overload(sigmoid, jit_options=_OPTS)
def _sigmoid(x):
    if x == types.float32:
        return lambda x: _ONE32 / (_ONE32 + _exp32(-x))
    return lambda x: 1.0 / (1.0 + _exp64(-x))


@overload(tanh, jit_options=_OPTS)
def _tanh(x):
    if x == types.float32:
        return lambda x: _TWO32 / (_ONE32 + _exp32(-_TWO32 * x)) - _ONE32
    return lambda x: 2.0 / (1.0 + _exp64(-2.0 * x)) - 1.0
