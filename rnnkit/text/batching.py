"""Batches: windows of parallel token streams for truncated BPTT, and length buckets.

**Streams and windows.**  A language model is trained on ``B`` contiguous pieces of the text
side by side; each step sees a window of ``T`` positions and learns to predict every next token::

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

**Length buckets** (the one bucket batcher, for every task with sentences of varying
length: classification, tagging, seq2seq).  :func:`bucket_batches` cuts a shuffled order into
batches of similar lengths, :func:`pad_batch` pads the id sequences of a batch with 0
(``<pad>``) and returns their lengths, and :func:`epoch_rng` gives each epoch its own generator
derived from ``(seed, epoch)`` so a resumed run sees exactly the batches an uninterrupted one
would::

    >>> ids, lengths = pad_batch([[5, 6, 7], [8]])
    >>> ids.tolist(), lengths.tolist()
    ([[5, 6, 7], [8, 0, 0]], [3, 1])
    >>> [b.tolist() for b in bucket_batches([3, 1, 2, 5], 2)]   # no rng: sorted, in order
    [[1, 2], [0, 3]]
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

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


# -- length buckets ---------------------------------------------------------------------------
def pad_batch(seqs: Sequence[Sequence[int]], pad: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(ids (B, T), lengths (B,))`` with ``T`` the longest sequence; empty ones refused."""
    lengths = np.array([len(s) for s in seqs], dtype=np.int64)  # (B,)
    if lengths.size == 0 or lengths.min() < 1:
        raise DataError("pad_batch: every sequence needs at least one token")
    ids = np.full((len(seqs), int(lengths.max())), pad, dtype=np.int64)  # (B, T)
    for b, s in enumerate(seqs):
        ids[b, : len(s)] = s
    return ids, lengths


def epoch_rng(seed: int, epoch: int) -> np.random.Generator:
    """The generator that orders epoch ``epoch`` of a run seeded with ``seed``."""
    return np.random.default_rng([seed, epoch])


def bucket_batches(lengths, batch_size: int, rng: np.random.Generator | None = None,
                   pool: int = 50) -> list[np.ndarray]:
    """Batches (arrays of example indices) of similar lengths.

    The examples are shuffled, cut into pools of ``pool * batch_size``, sorted by length inside
    each pool, cut into batches, and the batches shuffled.  Without ``rng``: sorted by length
    over the whole set and not shuffled (for evaluation, least padding).  The number of batches
    depends only on ``len(lengths)`` and ``batch_size``.
    """
    lengths = np.asarray(lengths)
    n = len(lengths)
    if batch_size < 1:
        raise DataError(f"batch size must be >= 1, got {batch_size}")
    if rng is None:
        order = np.argsort(lengths, kind="stable")
        return [order[i: i + batch_size] for i in range(0, n, batch_size)]
    perm = rng.permutation(n)
    size = pool * batch_size
    batches = []
    for s in range(0, n, size):
        chunk = perm[s: s + size]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches += [chunk[i: i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def num_bucket_batches(n: int, batch_size: int, pool: int = 50) -> int:
    """How many batches :func:`bucket_batches` makes of ``n`` examples."""
    size = pool * batch_size
    full, rest = divmod(n, size)
    return full * pool + -(-rest // batch_size)
