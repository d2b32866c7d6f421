"""Small input checkers used at the public boundary.  Inner functions trust their callers."""

from __future__ import annotations

import math
from dataclasses import fields

import numpy as np

from .errors import ConfigError, ShapeError


def _fmt(shape) -> str:
    return "(" + ", ".join(str(s) for s in shape) + (",)" if len(shape) == 1 else ")")


def check_array(
    owner: str, name: str, x, shape: tuple, dtype=None, finite: bool = True
) -> np.ndarray:
    """Check ``x`` against ``shape``; ``None`` or a letter in ``shape`` matches any size.

    Raises ``ValueError`` of the form ``LSTM: expected x of shape (B, T, 32), got (4, 7, 16)``.
    """
    x = np.asarray(x) if dtype is None else np.asarray(x, dtype=dtype)
    want = tuple("?" if s is None else s for s in shape)
    ok = x.ndim == len(shape) and all(
        isinstance(w, str) or w == g for w, g in zip(want, x.shape)
    )
    if not ok:
        raise ShapeError(f"{owner}: expected {name} of shape {_fmt(want)}, got {_fmt(x.shape)}")
    # A finite sum proves every element finite (NaN and inf propagate); only a sum that is not
    # (an overflow, or a bad value) needs the element-wise test.
    if finite and x.dtype.kind == "f" and not np.isfinite(np.sum(x)) \
            and not np.isfinite(x).all():
        bad = "NaN" if np.isnan(x).any() else "inf"
        raise ShapeError(f"{owner}: {name} contains {bad}; expected finite values")
    return x


def check_lengths(owner: str, lengths, B: int, T: int) -> np.ndarray:
    """Check per-row sequence lengths: B integers, each in 1..T."""
    lengths = np.asarray(lengths)
    if lengths.ndim != 1 or lengths.shape[0] != B:
        raise ShapeError(f"{owner}: expected lengths of shape ({B},), got {_fmt(lengths.shape)}")
    if lengths.dtype.kind not in "iu":
        if lengths.dtype.kind == "f" and np.all(lengths == np.round(lengths)):
            lengths = lengths.astype(np.int64)
        else:
            raise ShapeError(f"{owner}: expected integer lengths, got dtype {lengths.dtype}")
    if lengths.size and (lengths.min() < 1 or lengths.max() > T):
        raise ShapeError(
            f"{owner}: expected every length in 1..{T}, got min {int(lengths.min())} "
            f"and max {int(lengths.max())}"
        )
    return lengths.astype(np.int64)


def check_ids(owner: str, name: str, ids, V: int) -> np.ndarray:
    """Check integer token ids in 0..V-1."""
    ids = np.asarray(ids)
    if ids.dtype.kind not in "iu":
        raise ShapeError(f"{owner}: expected integer {name}, got dtype {ids.dtype}")
    if ids.size and (ids.min() < 0 or ids.max() >= V):
        raise ShapeError(
            f"{owner}: expected {name} in 0..{V - 1}, got values from {int(ids.min())} "
            f"to {int(ids.max())}"
        )
    return ids


def check_real(
    owner: str,
    name: str,
    value,
    lo: float = 0.0,
    hi: float = math.inf,
    *,
    lo_open: bool = False,
    hi_open: bool = True,
) -> float:
    """Check a real number against ``lo <= value < hi`` (each bound open or closed).

    A non-number (or a bool) raises ``TypeError``; a number out of range raises ``ValueError``
    of the form ``SGD: expected momentum >= 0 and finite, got momentum=-1``.

    >>> check_real("StepDecay", "factor", 0.5, 0.0, 1.0, lo_open=True, hi_open=False)
    0.5
    """
    ok_type = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_)
    )
    if not ok_type:
        raise TypeError(f"{owner}: expected {name} to be a number, got {value!r}")
    v = float(value)
    if (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi):
        return v
    lo_op = "<" if lo_open else "<="
    if hi == math.inf:
        want = f"{name} {'>' if lo_open else '>='} {lo:g}" + (" and finite" if hi_open else "")
    else:
        want = f"{lo:g} {lo_op} {name} {'<' if hi_open else '<='} {hi:g}"
    raise ValueError(f"{owner}: expected {want}, got {name}={value!r}")


def check_int(owner: str, name: str, value, lo: int = 0) -> int:
    """Check an integer ``>= lo`` (a bool is refused): ``TypeError`` or ``ValueError``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{owner}: expected {name} to be an integer, got {value!r}")
    if value < lo:
        raise ValueError(f"{owner}: expected {name} >= {lo}, got {name}={value!r}")
    return int(value)


def check_flag(owner: str, name: str, value) -> bool:
    """Check a ``True``/``False`` option (``TypeError`` otherwise)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{owner}: expected {name} to be True or False, got {value!r}")
    return bool(value)


def config_from_dict(cls, d, what: str):
    """``cls(**d)`` for a config dataclass read back from JSON, refusing a non-dict and unknown
    keys with a :class:`ConfigError` naming ``what`` ("unknown trainer config keys: [...]")."""
    if not isinstance(d, dict):
        raise ConfigError(f"{what} config must be a dict, got {type(d).__name__}")
    unknown = set(d) - {f.name for f in fields(cls)}
    if unknown:
        raise ConfigError(f"unknown {what} config keys: {sorted(unknown)}")
    return cls(**d)
