"""Run logs: metrics as JSON lines, and a progress bar on stderr.

A metrics file holds one JSON object per event, flushed line by line, so a run that crashes
keeps everything up to the crash::

    {"event": "step", "epoch": 1, "step": 100, "loss": 4.1, "ppl": 60.3, "lr": 0.002,
     "grad_norm": 3.2, "clipped": false, "tokens_per_s": 51234.0, "time": 12.5}
    {"event": "epoch", "epoch": 1, "train_loss": 4.0, "valid_loss": 4.2, "valid_ppl": 66.7}

NumPy scalars and arrays become plain numbers and lists; NaN and inf are written as Python's
``json`` writes them (``NaN``, ``Infinity``), so a diverged loss is still on record.

Example::

    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "metrics.jsonl"
    >>> with MetricsLog(p) as log:
    ...     _ = log.log("step", step=1, loss=np.float32(2.5), clipped=np.bool_(False))
    >>> read_metrics(p)
    [{'event': 'step', 'step': 1, 'loss': 2.5, 'clipped': False}]
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path, PurePath
from typing import TYPE_CHECKING

import numpy as np

from ..errors import DataError

if TYPE_CHECKING:
    from typing_extensions import Self


class MetricsLog:
    """Append-only JSON-lines metrics file.  Reopening an existing file keeps appending (resume);
    a partial last line left by a crash is dropped first so the file stays one object a line."""

    def __init__(self, path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _drop_partial_line(self.path)
        self._f = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 -- closed by close()

    def write(self, record: Mapping) -> dict:
        """Append one record (a dict) as a line and flush it; returns the plain-JSON copy."""
        rec = _plain(dict(record))
        self._f.write(json.dumps(rec, ensure_ascii=False, default=str) + "\n")
        self._f.flush()
        return rec

    def log(self, event: str, **fields) -> dict:
        """``log("step", step=100, loss=4.1)`` appends ``{"event": "step", "step": 100, ...}``."""
        return self.write({"event": event, **fields})

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_metrics(path) -> list[dict]:
    """All records of a metrics file, in order.  A truncated final line (a crash mid-write) is
    skipped; a bad line anywhere else raises :class:`DataError`."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: no such metrics file") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read metrics ({e.strerror})") from None
    lines = data.split(b"\n")
    records = []
    for i, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            rec = json.loads(raw.decode("utf-8"))
        except ValueError:
            if i == len(lines):
                break
            raise DataError(f"{path}: line {i} is not valid JSON") from None
        if not isinstance(rec, dict):
            raise DataError(f"{path}: line {i} is not a JSON object")
        records.append(rec)
    return records


def _plain(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, PurePath):
        return str(obj)
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def _drop_partial_line(path: Path) -> None:
    if not path.exists():
        return
    with open(path, "r+b") as f:
        size = f.seek(0, 2)
        if size == 0:
            return
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return
        start = max(0, size - (1 << 20))
        f.seek(start)
        tail = f.read()
        cut = tail.rfind(b"\n") + 1
        try:  # a complete record that only lost its newline is kept
            complete = isinstance(json.loads(tail[cut:].decode("utf-8")), dict)
        except ValueError:
            complete = False
        if complete:
            f.seek(0, 2)
            f.write(b"\n")
        else:
            f.truncate(start + cut)


# -- progress -----------------------------------------------------------------------------------

_SHORT_NAMES = {"tokens_per_s": "tok/s", "tok_per_s": "tok/s", "grad_norm": "|g|"}


class Progress:
    """A thin tqdm bar on stderr: ``update(n, loss=..., ppl=..., tokens_per_s=..., grad_norm=...)``.

    tqdm is imported only when the bar is enabled; with ``disable=True`` every call is a no-op.
    """

    def __init__(self, total: int | None = None, desc: str | None = None, unit: str = "tok",
                 disable: bool = False) -> None:
        self._bar = None
        if not disable:
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=unit, unit_scale=True,
                             file=sys.stderr, dynamic_ncols=True)

    def update(self, n: int = 0, **postfix) -> None:
        """Advance by ``n`` units and show ``postfix`` (``grad_norm`` shows as ``|g|``)."""
        if self._bar is None:
            return
        if postfix:
            shown = {_SHORT_NAMES.get(k, k): _fmt(v) for k, v in postfix.items()}
            self._bar.set_postfix(shown, refresh=False)
        self._bar.update(n)

    def write(self, msg: str) -> None:
        """Print a line to stderr without breaking the bar."""
        if self._bar is None:
            print(msg, file=sys.stderr)
        else:
            self._bar.write(msg, file=sys.stderr)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _fmt(v) -> str:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.number)):
        return str(v)
    v = float(v)
    if abs(v) >= 1e4:
        return f"{v / 1e3:.1f}k" if abs(v) < 1e6 else f"{v / 1e6:.2f}M"
    return f"{v:.4g}"
