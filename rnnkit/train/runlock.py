"""One writer per run directory: an OS file lock on ``DIR/.lock``.

The lock is ``fcntl.flock`` on an open file, so the kernel releases it when the process ends,
however it ends; a lock file left behind by a killed run is stale and taken over.  The file
holds the process id of the holder, for the error message only, and is removed on release.
Where ``fcntl`` is missing (Windows) no lock is taken.

Example::

    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> with RunLock(d):
    ...     RunLock(d).acquire()
    Traceback (most recent call last):
    ...
    rnnkit.errors.CheckpointError: ...: in use by another rnnkit run (process ...); ...
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import CheckpointError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

LOCK_FILE = ".lock"


class RunLock:
    """``with RunLock(out): ...`` holds the lock on the run directory ``out`` (created if
    missing); :class:`CheckpointError` when another process holds it."""

    def __init__(self, out) -> None:
        self.out = Path(out)
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        if fcntl is None or self._fd is not None:
            return self
        self.out.mkdir(parents=True, exist_ok=True)
        path = self.out / LOCK_FILE
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
                os.close(fd)
                raise CheckpointError(
                    f"{self.out}: in use by another rnnkit run (process {holder}); wait for it "
                    "to end or choose another --out") from None
            try:  # the holder may have removed the file between our open and flock
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                os.unlink(self.out / LOCK_FILE)
            except OSError:
                pass
            os.close(fd)  # closing the file releases the lock

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
