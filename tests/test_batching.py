"""batchify and the truncated-BPTT windows."""

from __future__ import annotations

import numpy as np
import pytest

from rnnkit.errors import ConfigError, DataError, ShapeError
from rnnkit.text import batchify, get_window, iter_windows, num_windows


def test_batchify_cuts_contiguous_rows_and_drops_remainder():
    ids = np.arange(23, dtype=np.int32)
    streams = batchify(ids, B=4, T=2)
    assert streams.dtype == np.int64 and streams.shape == (4, 5)
    for b in range(4):
        assert streams[b].tolist() == list(range(5 * b, 5 * b + 5))
    ids[0] = 99
    assert streams[0, 0] == 0  # a copy, not a view of the caller's array


def test_batchify_needs_one_window_per_row():
    assert batchify(np.arange(12), B=4, T=2).shape == (4, 3)
    with pytest.raises(DataError) as e:
        batchify(np.arange(11), B=4, T=2)
    assert str(e.value) == (
        "text has 11 tokens; need at least 12 = B * (T + 1) for batch size B=4 and window T=2"
    )


@pytest.mark.parametrize(
    "ids, B, T, error, match",
    [
        (np.zeros((2, 5), np.int64), 1, 1, ShapeError, r"ids of shape \(N,\), got \(2, 5\)"),
        (np.zeros(10), 2, 1, ShapeError, "integer token ids"),
        (np.arange(10), 0, 1, ConfigError, "B must be a positive integer"),
        (np.arange(10), 2, 2.0, ConfigError, "T must be a positive integer"),
    ],
)
def test_batchify_checks_arguments(ids, B, T, error, match):
    with pytest.raises(error, match=match):
        batchify(ids, B, T)


def _pytorch_style_windows(streams, T):
    """word_language_model's get_batch on the time-major layout, for reference."""
    source = streams.T  # (N, B)
    out = []
    for i in range(0, source.shape[0] - 1, T):
        seq_len = min(T, source.shape[0] - 1 - i)
        out.append((source[i : i + seq_len].T, source[i + 1 : i + 1 + seq_len].T))
    return out


@pytest.mark.parametrize("n, B, T", [(100, 4, 5), (101, 4, 5), (103, 3, 7), (20, 2, 9), (8, 2, 3)])
def test_windows_match_reference_and_cover_every_target_once(n, B, T):
    streams = batchify(np.arange(n) * 3 + 1, B, T)
    N = streams.shape[1]
    expected = _pytorch_style_windows(streams, T)
    assert num_windows(streams, T) == len(expected) == -(-(N - 1) // T)
    got = list(iter_windows(streams, T))
    assert [i for i, _, _ in got] == list(range(len(expected)))
    for (i, x, y), (ex, ey) in zip(got, expected):
        assert np.array_equal(x, ex) and np.array_equal(y, ey)
        gx, gy = get_window(streams, i, T)
        assert np.array_equal(gx, x) and np.array_equal(gy, y)
        assert x.shape == y.shape and x.shape[0] == B and 1 <= x.shape[1] <= T
    assert np.array_equal(np.concatenate([x for _, x, _ in got], axis=1), streams[:, :-1])
    assert np.array_equal(np.concatenate([y for _, _, y in got], axis=1), streams[:, 1:])


def test_last_window_is_shorter():
    streams = batchify(np.arange(20), B=2, T=4)  # N = 10: windows of 4, 4, 1 inputs
    assert [x.shape[1] for _, x, _ in iter_windows(streams, 4)] == [4, 4, 1]
    x, y = get_window(streams, 2, 4)
    assert x.tolist() == [[8], [18]] and y.tolist() == [[9], [19]]
    with pytest.raises(IndexError, match="window 3 is out of range; there are 3 windows"):
        get_window(streams, 3, 4)


def test_iter_windows_resumes_at_a_window():
    streams = batchify(np.arange(200), B=5, T=6)
    full = list(iter_windows(streams, 6))
    tail = list(iter_windows(streams, 6, start=3))
    assert [i for i, _, _ in tail] == list(range(3, len(full)))
    for (i, x, y), (j, fx, fy) in zip(tail, full[3:]):
        assert i == j and np.array_equal(x, fx) and np.array_equal(y, fy)
    assert list(iter_windows(streams, 6, start=len(full))) == []
    with pytest.raises(DataError, match="cannot resume at window 8; the data has only 7"):
        iter_windows(streams, 6, start=8)  # raises at the call, before iterating
    with pytest.raises(ConfigError, match="start must be an integer >= 0"):
        iter_windows(streams, 6, start=-1)
