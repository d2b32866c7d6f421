"""Data-parallel training over MPI: ``mpiexec -n N rnnkit train ...``.

Each of the ``N`` processes (ranks) holds the whole model and takes its share of every global
batch; after the backward pass one ``Allreduce`` sums the gradients, weighted by the units
(tokens, examples) each rank read, so every rank holds the gradient of the mean loss over the
whole global batch -- the gradient one process would compute -- and takes the same optimiser
step.  The weights therefore stay identical on every rank; :meth:`World.check_weights` proves
it now and then with a checksum.

:func:`world` is the entry point.  Without an MPI launcher (or with one process) it is a
single-process world whose collectives return their input, so code written against it runs
unchanged in one process.  ``mpi4py`` is imported only when the process was started by an MPI
launcher (``mpiexec``, ``mpirun``, ``srun``) or ``RNNKIT_MPI=1`` asks for it; ``RNNKIT_MPI=0``
turns the detection off.

In a training loop of one's own::

    from rnnkit import distributed as dist

    w = dist.world()                    # rank, size
    dist.broadcast_parameters(model)    # every rank starts from rank 0's weights
    for x, y in my_batches:             # this rank's share of each global batch (w.part)
        model.zero_grad()
        loss, n, _ = model.loss(x, y)
        n_all, (loss_sum,) = dist.allreduce_grads(model, count=n, extra=[loss * n])
        opt.step(model.grads())         # the same step on every rank
        if w.rank == 0:
            print(loss_sum / n_all)

(``examples/distributed_loop.py`` is a complete one.)

A collective that waits longer than ``timeout`` seconds (``RNNKIT_MPI_TIMEOUT``, default 600)
means another rank has died or hangs: the waiting rank prints what it waited for and exits
with status 3 instead of hanging.
"""

from __future__ import annotations

import os
import sys
import threading
import time

import numpy as np

from .errors import ConfigError, RnnkitError

# environment variables an MPI launcher sets in every process it starts
_LAUNCHER_RANK = ("PMI_RANK", "PMIX_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK",
                  "MPI_LOCALRANKID")
_LAUNCHER_SIZE = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE",
                  "SLURM_STEP_NUM_TASKS")
EXTRA = 8  # free slots after the gradients in the flat buffer: count, loss sum, flags
CHECK_EVERY = 100  # steps between weight checksums in the trainer
TIMEOUT_S = 600.0
LOST_PEER_EXIT = 3


class DistributedError(RnnkitError):
    """The ranks of a data-parallel run disagree (weights, options) or lost each other."""


def launched_size() -> int | None:
    """How many processes the MPI launcher says it started (None: not started by one)."""
    for key in _LAUNCHER_SIZE:
        if key in os.environ:
            try:
                return int(os.environ[key])
            except ValueError:
                return None
    if any(key in os.environ for key in _LAUNCHER_RANK):
        return 1
    return None


def _wanted() -> bool:
    flag = os.environ.get("RNNKIT_MPI", "").strip().lower()
    if flag in ("0", "no", "false", "off"):
        return False
    if flag in ("1", "yes", "true", "on"):
        return True
    return launched_size() is not None


class World:
    """The processes of one run: ``rank`` (0 .. ``size`` - 1) and ``size``, with the few
    collectives data-parallel training needs.  With ``comm=None``: one process, and every
    collective returns its input."""

    def __init__(self, comm=None, *, timeout: float | None = None):
        self.comm = comm
        self.rank = 0 if comm is None else comm.Get_rank()
        self.size = 1 if comm is None else comm.Get_size()
        self.check_every = CHECK_EVERY
        if timeout is None:
            timeout = float(os.environ.get("RNNKIT_MPI_TIMEOUT", TIMEOUT_S))
        self.timeout = timeout
        self._waiting: tuple[float, str] | None = None
        if self.size > 1 and timeout > 0:
            threading.Thread(target=self._watch, name="rnnkit-mpi-watchdog",
                             daemon=True).start()

    def __repr__(self) -> str:
        return f"World(rank={self.rank}, size={self.size})"

    # -- the watchdog ------------------------------------------------------------------------
    def _watch(self) -> None:
        while True:
            time.sleep(min(1.0, self.timeout / 4))
            waiting = self._waiting
            if waiting is not None and time.monotonic() - waiting[0] > self.timeout:
                print(f"rnnkit: rank {self.rank} of {self.size} waited more than "
                      f"{self.timeout:.0f} s in {waiting[1]}: another rank has died or stopped "
                      "answering; exiting", file=sys.stderr, flush=True)
                os._exit(LOST_PEER_EXIT)

    def _collective(self, what: str, call, *args):
        self._waiting = (time.monotonic(), what)
        try:
            return call(*args)
        finally:
            self._waiting = None

    # -- work sharing -------------------------------------------------------------------------
    def part(self, n: int) -> tuple[int, int]:
        """This rank's contiguous share ``[lo, hi)`` of ``n`` items (sizes differ by at most
        one, the first ranks taking the larger shares).

        >>> [World().part(10)]
        [(0, 10)]
        """
        q, r = divmod(int(n), self.size)
        lo = self.rank * q + min(self.rank, r)
        return lo, lo + q + (self.rank < r)

    def shard(self, items):
        """This rank's contiguous share of a sequence (see :meth:`part`)."""
        lo, hi = self.part(len(items))
        return items[lo:hi]

    # -- collectives --------------------------------------------------------------------------
    def allreduce_grads(self, model, count: float = 1.0, extra=()) -> tuple[float, list]:
        """Replace the gradients of ``model`` on every rank by
        ``sum_r count_r * grad_r / sum_r count_r`` in one ``Allreduce``.

        When each rank's gradients are those of its *mean* loss over ``count`` units, the result
        is the gradient of the mean loss over every rank's units: the single-process gradient of
        the global batch.  A rank with ``count = 0`` contributes nothing.  ``extra`` (up to
        eight numbers) is summed in the same call.  Returns ``(sum of count, sums of extra)``.
        """
        extra = [float(v) for v in extra]
        if len(extra) > EXTRA - 1:
            raise ValueError(f"allreduce_grads: at most {EXTRA - 1} extra numbers, "
                             f"got {len(extra)}")
        if self.size == 1:
            return float(count), extra
        flat = model.flat_grad(EXTRA)
        P = model.num_parameters()
        body = flat[:P]
        if count != 1.0:
            body *= count
        flat[P] = count
        flat[P + 1: P + 1 + len(extra)] = extra
        flat[P + 1 + len(extra):] = 0
        from mpi4py import MPI

        self._collective("the gradient Allreduce", self.comm.Allreduce, MPI.IN_PLACE, flat,
                         MPI.SUM)
        total = float(flat[P])
        if total > 0:
            body *= 1.0 / total
        return total, [float(v) for v in flat[P + 1: P + 1 + len(extra)]]

    def broadcast_parameters(self, model, root: int = 0) -> None:
        """Copy rank ``root``'s weights into every rank's ``model`` (one ``Bcast`` per array)."""
        self.bind(model)
        if self.size == 1:
            return
        for w in model.parameters().values():
            self._collective("the weight broadcast", self.comm.Bcast, w, root)

    def bind(self, model) -> None:
        """Give ``model`` the flat gradient buffer :meth:`allreduce_grads` sums (see
        :meth:`rnnkit.nn.module.Module.flat_grad`); call it before keeping ``model.grads()``."""
        if self.size > 1:
            model.flat_grad(EXTRA)

    def check_weights(self, model, step: int | None = None) -> None:
        """Compare a checksum of the weights across ranks; :class:`DistributedError` on every
        rank when any differ (the ranks no longer train the same model)."""
        if self.size == 1:
            return
        sums = self.allgather(weight_checksum(model), what="the weight checksum")
        if len(set(sums)) > 1:
            odd = [r for r, s in enumerate(sums) if s != sums[0]]
            at = "" if step is None else f" after step {step}"
            raise DistributedError(
                f"the weights differ between ranks{at} (ranks {odd} disagree with rank 0): "
                "the processes no longer train the same model; stopping")

    def sum(self, values) -> np.ndarray:
        """Element-wise sum over ranks of ``values`` (float64 array)."""
        buf = np.array(values, np.float64, ndmin=1)
        if self.size > 1:
            from mpi4py import MPI

            self._collective("a sum over ranks", self.comm.Allreduce, MPI.IN_PLACE, buf,
                             MPI.SUM)
        return buf

    def any(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is true on any."""
        return bool(self.sum([1.0 if flag else 0.0])[0] > 0)

    def bcast(self, obj, root: int = 0, what: str = "a broadcast"):
        """Rank ``root``'s ``obj`` (any picklable object) on every rank."""
        return obj if self.size == 1 else self._collective(what, self.comm.bcast, obj, root)

    def gather(self, obj, root: int = 0, what: str = "a gather"):
        """On ``root``: the list of every rank's ``obj``; elsewhere ``None``."""
        return [obj] if self.size == 1 else self._collective(what, self.comm.gather, obj, root)

    def allgather(self, obj, what: str = "an allgather") -> list:
        """The list of every rank's ``obj``, on every rank."""
        return [obj] if self.size == 1 else self._collective(what, self.comm.allgather, obj)

    def barrier(self) -> None:
        if self.size > 1:
            self._collective("a barrier", self.comm.Barrier)

    def abort(self, code: int = 1) -> None:
        """End every rank at once (after an error on this one)."""
        if self.size > 1:
            sys.stdout.flush()
            sys.stderr.flush()
            self.comm.Abort(code)


def weight_checksum(model) -> int:
    """An order-free checksum of the exact bits of every weight (sum of the words, mod 2**64).

    >>> from rnnkit.nn.layers import Linear
    >>> a, b = Linear(3, 2, rng=0), Linear(3, 2, rng=0)
    >>> weight_checksum(a) == weight_checksum(b)
    True
    """
    total = 0
    for p in model.parameters().values():
        words = p.reshape(-1).view(np.uint64 if p.itemsize == 8 else np.uint32)
        total += int(np.sum(words, dtype=np.uint64))
    return total % (1 << 64)


_WORLD: World | None = None


def world(force: bool = False) -> World:
    """This process's :class:`World` (made once).  MPI is used when the process was started by
    an MPI launcher, ``RNNKIT_MPI=1`` is set, or ``force``; otherwise (and when the launcher
    started one process) the world is this process alone."""
    global _WORLD
    if _WORLD is not None and (_WORLD.comm is not None or not force):
        return _WORLD
    if not (force or _wanted()):
        _WORLD = World()
        return _WORLD
    try:
        from mpi4py import MPI
    except ImportError:
        size = launched_size()
        if size and size > 1:
            raise ConfigError(
                f"started as one of {size} processes by an MPI launcher, but mpi4py is not "
                'installed: pip install "rnnkit[mpi]"') from None
        _WORLD = World()
        return _WORLD
    except RuntimeError as e:  # mpi4py is there, the MPI library it needs is not
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError(f"mpi4py cannot load an MPI library ({first}): install one, e.g. "
                          'pip install "rnnkit[mpi]" (the mpich wheel)') from None
    comm = MPI.COMM_WORLD
    size = launched_size()
    if size and size > 1 and comm.Get_size() == 1:
        # every process would train alone and write the same files
        raise ConfigError(
            f"started as one of {size} processes by an MPI launcher, but MPI sees a world of "
            f"one: mpi4py uses another MPI library ({MPI.Get_library_version().splitlines()[0]}"
            ") than the launcher; use the mpiexec of that library")
    _WORLD = World(comm) if comm.Get_size() > 1 else World()
    return _WORLD


def allreduce_grads(model, count: float = 1.0, extra=()) -> tuple[float, list]:
    """:meth:`World.allreduce_grads` of :func:`world`."""
    return world().allreduce_grads(model, count, extra)


def broadcast_parameters(model, root: int = 0) -> None:
    """:meth:`World.broadcast_parameters` of :func:`world`."""
    world().broadcast_parameters(model, root)
