"""Data-parallel training speed over MPI, measured on this machine, and a model of it on more.

Part 1 (measured): training tokens per second of three language-model configurations at

* N = 1 process with 1 BLAS thread,
* N = 2 processes (``mpiexec -n 2``) with 1 BLAS thread each, the global batch split between
  them and one gradient ``Allreduce`` per step (:mod:`rnnkit.distributed`),
* N = 1 process with 2 BLAS threads (the best one process can do with both cores),

and the efficiency ``speed(2) / (2 * speed(1))``.  The steps are those of ``rnnkit train``
(forward, backward, allreduce, clip, SGD) on random token ids of the real vocabulary size: the
cost of a step does not depend on which tokens it reads.

Part 2 (model): the step time on N machines, one process each,

    step(N) = compute(B / N) + 2 (N - 1) / N * G / bandwidth + latency(N)

with ``G`` the gradient bytes (float32), a ring allreduce over 10 and 100 Gb/s links, and
``compute(b)`` (everything in a step but the allreduce: forward, backward, clipping, the SGD
update) fitted as ``a + c * b`` to single-process steps measured here at several batch sizes
``b``.  ``latency(N) = 2 (N - 1) * hop`` where ``hop`` is the larger of the small-message
``Allreduce`` time measured here between two processes and 25 microseconds (a TCP hop on
Ethernet; an assumption, not a measurement).  The table prints the speed-up over one machine,
the efficiency, and where each model stops scaling (the speed-up peaks, or the efficiency
falls below 50 %) and why: communication, the fixed cost of a step, or a global batch that
has fewer rows than machines.

Run (the machine should be idle; it takes a few minutes)::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_mpi.py
    python benchmarks/bench_mpi.py --steps 2 --models ptb-small   # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

from benchutil import machine_line

# name: (vocab, embed, hidden, layers, global batch B, bptt T)
MODELS = {
    "ptb-small": (10000, 200, 200, 2, 20, 20),       # Zaremba et al. 2014 "small"
    "ptb-medium": (10000, 650, 650, 2, 20, 35),      # "medium": 2 x 650, ~13 M parameters
    "shakespeare": (65, 512, 512, 2, 64, 128),       # char-level, 2 x 512 (nanoGPT split)
}
LINKS_GBIT = (10, 100)
HOP_S = 25e-6
SIZES = (2, 4, 8, 16, 32, 64)


# -- the worker: runs under mpiexec (or alone) and prints one JSON line on rank 0 ---------------
def worker(name: str, steps: int, batch: int | None) -> None:
    import numpy as np

    from rnnkit import distributed
    from rnnkit.tasks.lm.model import LanguageModel, LMConfig
    from rnnkit.train.optim import clip_grad_norm, make_optimizer

    V, E, H, L, B, T = MODELS[name]
    B = batch or B
    world = distributed.world()
    cfg = LMConfig(vocab_size=V, cell="lstm", embed_size=E, hidden_size=H, num_layers=L,
                   dtype="float32")
    model = LanguageModel(cfg, rng=np.random.default_rng(0))
    world.broadcast_parameters(model)
    grads = model.grads()
    opt = make_optimizer("sgd", model.parameters(), lr=1.0)
    lo, hi = world.part(B)
    rng = np.random.default_rng(world.rank)
    ids = rng.integers(0, V, (hi - lo, T + 1))
    state, compute, comm, total = None, [], [], []
    for i in range(steps + 1):  # the first step warms up (allocations, BLAS buffers)
        world.barrier()
        t0 = time.perf_counter()
        model.zero_grad()
        _, n, state = model.loss(ids[:, :-1], ids[:, 1:], state)
        t1 = time.perf_counter()
        world.allreduce_grads(model, n)
        t2 = time.perf_counter()
        clip_grad_norm(grads, 0.25)
        opt.step(grads)
        t3 = time.perf_counter()
        if i:
            compute.append((t1 - t0) + (t3 - t2))  # everything but the allreduce
            comm.append(t2 - t1)
            total.append(t3 - t0)
    # the slowest rank sets the pace: take the largest per-step figure over the ranks
    figures = world.allgather((compute, comm, total))
    step = [max(f[2][k] for f in figures) for k in range(steps)]
    small = _small_allreduce(world)
    if world.rank == 0:
        med = sorted(step)[len(step) // 2]
        print(json.dumps({
            "model": name, "N": world.size, "B": B, "T": T,
            "params": model.num_parameters(), "step_s": med, "tokens_per_s": B * T / med,
            "compute_s": _median([x for f in figures for x in f[0]]),
            "allreduce_s": _median([x for f in figures for x in f[1]]),
            "small_allreduce_s": small}))


def _small_allreduce(world) -> float:
    import numpy as np

    if world.size == 1:
        return 0.0
    buf = np.zeros(8)
    times = []
    for _ in range(50):
        t0 = time.perf_counter()
        world.sum(buf)
        times.append(time.perf_counter() - t0)
    return _median(times)


def _median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2] if xs else 0.0


# -- the driver ------------------------------------------------------------------------------
def _run(n: int, threads: int, model: str, steps: int, batch: int | None = None) -> dict:
    env = {**os.environ, "OPENBLAS_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads),
           "MKL_NUM_THREADS": str(threads)}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", model,
           "--steps", str(steps)]
    if batch:
        cmd += ["--batch", str(batch)]
    if n > 1:
        cmd = [_mpiexec(), "-n", str(n), *cmd]
    else:
        env["RNNKIT_MPI"] = "0"
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def _mpiexec() -> str:
    for cand in (os.environ.get("RNNKIT_MPIEXEC"), Path(sys.executable).parent / "mpiexec",
                 shutil.which("mpiexec")):
        if cand and Path(cand).exists():
            return str(cand)
    sys.exit("bench_mpi: no mpiexec found (pip install 'rnnkit[mpi]', or set RNNKIT_MPIEXEC)")


def fit_compute(points: list[tuple[int, float]]) -> tuple[float, float]:
    """Least-squares ``a + c * b`` through ``(b, seconds)``, with ``a, c >= 0``."""
    n = len(points)
    mb = sum(b for b, _ in points) / n
    mt = sum(t for _, t in points) / n
    var = sum((b - mb) ** 2 for b, _ in points)
    c = sum((b - mb) * (t - mt) for b, t in points) / var if var else 0.0
    c = max(c, 0.0)
    return max(mt - c * mb, 0.0), c


def scaling(name: str, a: float, c: float, grad_bytes: float, hop: float, gbit: float):
    """Rows ``(N, step s, compute s, comm s, speed-up, efficiency)`` and the verdict."""
    B = MODELS[name][4]
    one = a + c * B
    rows = []
    for N in SIZES:
        b = B / N
        comp = a + c * max(b, 1.0)
        comm = 2 * (N - 1) / N * grad_bytes / (gbit * 1e9 / 8) + 2 * (N - 1) * hop
        step = comp + comm
        speed = one / step  # past N = B, machines beyond the B rows idle
        rows.append((N, step, comp, comm, speed, speed / N))
    best = max(rows, key=lambda r: r[4])
    half = next((r for r in rows if r[5] < 0.5), None)
    stop = half or best
    N, _, comp, comm, _, _ = stop
    if N > B:
        why = f"the global batch has {B} rows, fewer than {N} machines"
    elif comm > comp:
        why = f"communication ({comm * 1e3:.1f} ms) exceeds compute ({comp * 1e3:.1f} ms)"
    else:
        why = (f"the fixed cost of a step ({a * 1e3:.1f} ms, independent of the batch) "
               f"dominates compute ({comp * 1e3:.1f} ms)")
    verdict = (f"peak speed-up {best[4]:.1f}x at N = {best[0]}; "
               + (f"efficiency below 50 % from N = {half[0]}: {why}" if half else
                  f"efficiency stays above 50 % up to N = {SIZES[-1]}"))
    return rows, verdict


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    p.add_argument("--steps", type=int, default=3, help="timed steps per run (after 1 warm-up)")
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    args = p.parse_args(argv)
    if args.worker:
        return worker(args.worker, args.steps, args.batch)
    load = os.getloadavg()
    print(f"{machine_line()} | load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"python {platform.python_version()}, mpiexec {_mpiexec()}")
    print("\n## measured: tokens/s (median step; N = 2 is the slower rank's step)")
    print(f"{'model':12} {'params':>10} {'N=1,1thr':>10} {'N=2,1thr':>10} {'eff':>6} "
          f"{'N=1,2thr':>10} {'N2/2thr':>8} {'allreduce':>10}")
    results = {}
    for name in args.models:
        one = _run(1, 1, name, args.steps)
        two = _run(2, 1, name, args.steps)
        threads = _run(1, 2, name, args.steps)
        results[name] = (one, two)
        eff = two["tokens_per_s"] / (2 * one["tokens_per_s"])
        print(f"{name:12} {one['params']:>10,} {one['tokens_per_s']:>10,.0f} "
              f"{two['tokens_per_s']:>10,.0f} {eff:>6.2f} {threads['tokens_per_s']:>10,.0f} "
              f"{two['tokens_per_s'] / threads['tokens_per_s']:>8.2f} "
              f"{two['allreduce_s'] * 1e3:>8.1f}ms", flush=True)
    print("\n## model: N machines, one process each, ring allreduce "
          f"(hop {HOP_S * 1e6:.0f} us or the measured small Allreduce, whichever is larger)")
    for name in args.models:
        one, two = results[name]
        B = MODELS[name][4]
        points = [(B, one["compute_s"])]
        for b in sorted({max(1, B // 4), 1}):  # two more batch sizes, one step each + warm-up
            points.append((b, _run(1, 1, name, 1, batch=b)["compute_s"]))
        a, c = fit_compute(points)
        grad_bytes = 4 * one["params"]
        hop = max(HOP_S, two["small_allreduce_s"])
        print(f"\n{name}: B = {B}, gradient {grad_bytes / 1e6:.1f} MB, compute(b) = "
              f"{a * 1e3:.1f} ms + {c * 1e3:.2f} ms x b (fitted to b = "
              f"{', '.join(str(b) for b, _ in points)}), measured 2-process allreduce "
              f"{two['allreduce_s'] * 1e3:.1f} ms")
        for gbit in LINKS_GBIT:
            rows, verdict = scaling(name, a, c, grad_bytes, hop, gbit)
            print(f"  {gbit} Gb/s: " + "  ".join(f"N={r[0]}: {r[4]:.1f}x ({r[5]:.0%})"
                                                 for r in rows))
            print(f"    {verdict}")
    print(f"\nend: load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
