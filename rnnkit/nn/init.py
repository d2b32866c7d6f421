"""Weight initialisers.  Every function takes an explicit ``numpy.random.Generator``."""

from __future__ import annotations

import numpy as np


def as_rng(seed) -> np.random.Generator:
    """Accept a Generator, an int seed or None (fresh entropy)."""
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(seed)


def xavier_uniform(rng: np.random.Generator, fan_in: int, fan_out: int, dtype) -> np.ndarray:
    """Glorot & Bengio (2010): U(-a, a), a = sqrt(6 / (fan_in + fan_out));
    shape (fan_in, fan_out)."""
    a = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-a, a, size=(fan_in, fan_out)).astype(dtype)


def orthogonal(rng: np.random.Generator, n: int, dtype, gain: float = 1.0) -> np.ndarray:
    """A random (n, n) orthogonal matrix (QR of a Gaussian matrix, signs fixed by diag(R))."""
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    q *= np.sign(np.diag(r))
    return (gain * q).astype(dtype)


def uniform(rng: np.random.Generator, shape, scale: float, dtype) -> np.ndarray:
    """U(-scale, scale), as in Zaremba et al. (2014) with scale 0.1."""
    return rng.uniform(-scale, scale, size=shape).astype(dtype)


def identity(n: int, dtype, scale: float = 1.0) -> np.ndarray:
    """``scale * I``: the IRNN initialisation of Le, Jaitly & Hinton (2015) for ReLU RNNs."""
    return (scale * np.eye(n)).astype(dtype)
