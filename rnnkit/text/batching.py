"""Cutting one token stream into parallel streams and windows for truncated BPTT.

A language model is trained on ``B`` contiguous pieces of the text side by side; each step
sees a window of ``T`` positions and learns to predict every next token::

    >>> streams = batchify(np.arange(10), B=2)   # drops nothing: 10 = 2 * 5
    >>> streams
    array([[0, 1, 2, 3, 4],
           [5, 6, 7, 8, 9]])
    >>> num_windows(streams, T=3)
    2
    >>> x, y = get_window(streams, 1, T=3)       # the last window is shorter
    >>> x.tolist(), y.tolist()
    ([[3], [8]], [[4], [9]])

This is PyTorch's ``word_language_model`` ``batchify``/``get_batch`` made batch-first: row ``b``
of ``streams`` continues row ``b`` of the window before, so the hidden state is carried from
window to window (detached) and one pass over the windows sees every target once.  The windows
are views of ``streams``; do not write into them.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ..checks import check_array
from ..errors import ConfigError, DataError, ShapeError


def _check_positive(owner: str, name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"{owner}: {name} must be a positive integer, got {value!r}")


def batchify(ids: np.ndarray, B: int, T: int = 1) -> np.ndarray:
    """Cut the 1-D token stream ``ids`` into ``B`` contiguous rows ``(B, N)``, ``N = len // B``.

    Row ``b`` is ``ids[b * N:(b + 1) * N]``; the last ``len(ids) % B`` tokens are dropped.
    :class:`DataError` if a row would be shorter than one window plus its shifted target,
    i.e. ``len(ids) < B * (T + 1)``.
    """
    _check_positive("batchify", "B", B)
    _check_positive("batchify", "T", T)
    ids = check_array("batchify", "ids", ids, ("N",))
    if ids.dtype.kind not in "iu":
        raise ShapeError(f"batchify: expected integer token ids, got dtype {ids.dtype}")
    n = ids.shape[0]
    if n < B * (T + 1):
        raise DataError(
            f"text has {n} tokens; need at least {B * (T + 1)} = B * (T + 1) for batch size "
            f"B={B} and window T={T}"
        )
    N = n // B
    return ids[: B * N].astype(np.int64).reshape(B, N)  # (B, N)


def num_windows(streams: np.ndarray, T: int) -> int:
    """How many windows of at most ``T`` inputs cover ``streams`` ``(B, N)``: ``ceil((N-1)/T)``."""
    _check_positive("num_windows", "T", T)
    N = streams.shape[1]
    return max(0, -(-(N - 1) // T))


def get_window(streams: np.ndarray, i: int, T: int) -> tuple[np.ndarray, np.ndarray]:
    """Window ``i``: inputs ``x`` and next-token targets ``y``, both ``(B, T')``.

    ``x = streams[:, i*T : i*T + T']`` and ``y`` is the same slice one position later;
    ``T' = T`` except for the last window, which holds what is left (``T' <= T``).
    """
    _check_positive("get_window", "T", T)
    n = num_windows(streams, T)
    if not 0 <= i < n:
        raise IndexError(f"get_window: window {i} is out of range; there are {n} windows")
    start = i * T
    length = min(T, streams.shape[1] - 1 - start)
    x = streams[:, start : start + length]  # (B, T')
    y = streams[:, start + 1 : start + 1 + length]  # (B, T')
    return x, y


def iter_windows(
    streams: np.ndarray, T: int, start: int = 0
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Yield ``(i, x, y)`` for windows ``start, start + 1, ...``; ``start`` resumes an epoch.

    ``start`` equal to the number of windows yields nothing (the epoch was finished);
    a larger ``start`` raises :class:`DataError`, since it means the data or ``T`` changed.
    """
    n = num_windows(streams, T)
    if isinstance(start, bool) or not isinstance(start, (int, np.integer)) or start < 0:
        raise ConfigError(f"iter_windows: start must be an integer >= 0, got {start!r}")
    if start > n:
        raise DataError(
            f"iter_windows: cannot resume at window {start}; the data has only {n} windows "
            f"of T={T} (did the data, batch size or window change?)"
        )
    return _windows(streams, T, start, n)


def _windows(streams, T, start, n):
    # A separate generator so that iter_windows checks its arguments when called, not later.
    for i in range(start, n):
        x, y = get_window(streams, i, T)
        yield i, x, y
