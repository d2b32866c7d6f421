"""Helpers shared by the benchmarks that race rnnkit against torch: thread control, interleaved
timing, the machine description.

``measure(fns, ...)`` times a dict of callables (``{"rnnkit": f, "torch": g}``) in interleaved
rounds and returns the median seconds per call of each, so that the *ratio* stays honest when
the machine's speed drifts (see the method in ``bench_layers.py``'s docstring).
"""

from __future__ import annotations

import ctypes
import gc
import os
import platform
import statistics
import sys
import time


# -- threads -----------------------------------------------------------------------------
def _openblas():
    """The OpenBLAS library NumPy loaded (with its symbol prefix), or ``(None, "")``."""
    try:
        with open("/proc/self/maps") as f:
            paths = sorted({ln.split()[-1] for ln in f if "openblas" in ln.lower() and "/" in ln})
    except OSError:
        return None, ""
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for get, set_ in (
            ("scipy_openblas_get_num_threads64_", "scipy_openblas_set_num_threads64_"),
            ("scipy_openblas_get_num_threads", "scipy_openblas_set_num_threads"),
            ("openblas_get_num_threads64_", "openblas_set_num_threads64_"),
            ("openblas_get_num_threads", "openblas_set_num_threads"),
        ):
            if hasattr(lib, get) and hasattr(lib, set_):
                return (getattr(lib, get), getattr(lib, set_)), path
    return None, ""


def setup_threads(n: int | None):
    """Set NumPy's BLAS, torch and numba (the compiled kernels' element-wise passes) to ``n``
    threads (default: what NumPy's BLAS uses now)."""
    import numpy as np
    import torch

    if n is not None:
        try:
            import numba

            numba.set_num_threads(min(int(n), numba.config.NUMBA_NUM_THREADS))
        except ImportError:
            pass

    np.ones((64, 64)) @ np.ones((64, 64))  # make sure the BLAS is loaded
    funcs, path = _openblas()
    if funcs is not None:
        get, set_ = funcs
        if n is not None:
            set_(int(n))
        blas_threads = int(get())
    else:  # another BLAS: --threads was already put in the environment before importing NumPy
        blas_threads = n if n is not None else (os.cpu_count() or 1)
    torch.set_num_threads(blas_threads)
    return blas_threads, torch.get_num_threads(), os.path.basename(path) or "unknown"


def threads_env(n: int | None) -> None:
    """Put ``n`` in the thread variables of BLAS libraries the ctypes route cannot reach
    (must run before NumPy is imported to have any effect on those)."""
    if n is not None:
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(n)


# -- timing ------------------------------------------------------------------------------
def measure(fns: dict, repeats: int, target: float, budget: float, clock=time.perf_counter) -> dict:
    """Median seconds per call of each function over interleaved rounds.

    A round runs each function ``inner`` times back to back (about ``target`` seconds each);
    ``repeats`` rounds, or fewer (at least 3) where they would take over ``budget`` seconds.
    """
    inner, per_round = {}, 0.0
    for name, fn in fns.items():
        fn()  # warm-up: first-call costs (allocator, BLAS buffers, torch's kernel choice)
        t0 = time.perf_counter()
        fn()  # warm-up that also sizes the batch of calls
        est = max(time.perf_counter() - t0, 1e-7)
        if est < target / 10:  # cheap calls: warm up longer, and re-estimate
            n = max(1, round(target / 2 / est))
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            est = max((time.perf_counter() - t0) / n, 1e-7)
        inner[name] = max(1, round(target / est))
        per_round += inner[name] * est
    rounds = max(3, min(repeats, int(budget / per_round)))
    names = list(fns)
    times = {name: [] for name in names}
    gc.collect()
    gc.disable()
    try:
        for r in range(rounds):
            for name in names if r % 2 == 0 else names[::-1]:
                fn, n = fns[name], inner[name]
                t0 = clock()
                for _ in range(n):
                    fn()
                times[name].append((clock() - t0) / n)
    finally:
        gc.enable()
    med = {name: statistics.median(ts) for name, ts in times.items()}
    spread = max((max(ts) - min(ts)) / med[name] for name, ts in times.items())
    return {"median_s": med, "spread": spread, "inner": inner, "rounds": rounds, "all_s": times}


# -- report ------------------------------------------------------------------------------
# CPU features that decide which BLAS and vector kernels can run
FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
         "avx512_bf16", "amx_tile", "asimd", "sve")


def cpu_description() -> tuple[str, list[str]]:
    """The CPU model and which of :data:`FLAGS` it has (from /proc/cpuinfo)."""
    cpu, flags = platform.processor() or "unknown", []
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        return cpu, flags
    for ln in text.splitlines():
        key = ln.split(":", 1)[0].strip()
        if key == "model name" and cpu in ("unknown", platform.processor()):
            cpu = ln.split(":", 1)[1].strip()
        elif key in ("flags", "Features") and not flags:
            have = set(ln.split(":", 1)[1].split())
            flags = [f for f in FLAGS if f in have]
    return cpu, flags


def blas_description() -> list[dict]:
    """Every BLAS loaded in this process as threadpoolctl reports it: library, version, the
    kernel (core type) it runs, threads.  Load SciPy's first (the compiled kernels call it)."""
    try:
        import scipy.linalg.cython_blas  # noqa: F401
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    return [{"library": os.path.basename(d.get("filepath", "")), "api": d.get("internal_api"),
             "version": d.get("version"), "core": d.get("architecture"),
             "threads": d.get("num_threads")}
            for d in threadpool_info() if d.get("user_api") == "blas"]


def machine_line() -> str:
    """One line for a results table: the CPU, its core count, every BLAS with the kernel
    (core type) it runs, and the Python version."""
    cpu, _ = cpu_description()
    blas = ", ".join(f"{b['api']} {b['version']} {b['core']} x{b['threads']}"
                     for b in blas_description()) or "unknown (threadpoolctl absent)"
    return f"{cpu}, {os.cpu_count()} cores; BLAS: {blas}; Python {platform.python_version()}"


def kernels_description() -> dict:
    """Which cell functions rnnkit runs (``RNNKIT_KERNELS``), with numba's version and
    threads where the compiled kernels run."""
    from rnnkit.nn.cells.dispatch import backend

    out = {"kernels": backend()}
    if out["kernels"] == "numba":
        import numba

        out.update(numba=numba.__version__, numba_threads=numba.get_num_threads())
    return out


def machine_info(blas_threads, torch_threads, blas_lib) -> dict:
    import numpy as np
    import torch

    cpu, flags = cpu_description()
    return {
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "numpy_blas": blas_lib,
        "numpy_blas_threads": blas_threads,
        "torch_threads": torch_threads,
        "dtype": "float32",
        "cpu_flags": flags,
        "blas": blas_description(),
        "openblas_env": {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")},
        **kernels_description(),
    }


def load_average() -> float:
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):
        return float("nan")


def print_header(info: dict) -> None:
    print(f"CPU: {info['cpu']} ({info['logical_cpus']} logical CPUs); Python {info['python']}")
    print(f"CPU flags: {' '.join(info['cpu_flags']) or 'unknown'}")
    print(
        f"numpy {info['numpy']} (BLAS {info['numpy_blas']}, {info['numpy_blas_threads']} "
        f"threads); torch {info['torch']} ({info['torch_threads']} threads); float32"
    )
    for b in info["blas"]:
        print(f"BLAS (threadpoolctl): {b['library']} {b['api']} {b['version']}, kernel "
              f"{b['core']}, {b['threads']} threads")
    env = ", ".join(f"{k}={v}" if v is not None else f"{k} unset"
                    for k, v in info["openblas_env"].items())
    print(f"environment: {env}")
    extra = (f" (numba {info['numba']}, {info['numba_threads']} threads)"
             if info["kernels"] == "numba" else "")
    print(f"rnnkit cell kernels: {info['kernels']}{extra}")
    print(f"1-minute load average at start: {info['load_before']:.2f}")


def sgemm_gflops(n: int = 1024, repeats: int = 5, clock=time.perf_counter) -> float:
    """GFLOP/s of NumPy's float32 matrix product (n x n by n x n), best of ``repeats``,
    at the BLAS thread count in force, timed with the benchmark's ``clock``."""
    import numpy as np

    a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    c = np.empty_like(a)
    np.matmul(a, a, out=c)
    best = float("inf")
    for _ in range(repeats):
        t0 = clock()
        np.matmul(a, a, out=c)
        best = min(best, clock() - t0)
    return 2 * n**3 / best / 1e9


def fma_peak_gflops(repeats: int = 3, clock=time.perf_counter) -> float | None:
    """GFLOP/s of rnnkit's packed micro-kernel on one thread, on operands that stay in cache
    ((96, 128) x (128, 256), float32), best of ``repeats``: what this core's fused
    multiply-adds give at best; None without numba."""
    try:
        import numpy as np
        from numba import njit

        from rnnkit.nn.cells.kernels.packed import gemm_packed, pack
    except ImportError:
        return None

    @njit
    def loop(n, a, p, c):
        for _ in range(n):
            gemm_packed(a, p, c)

    rng = np.random.default_rng(0)
    M, K, N = 96, 128, 256
    a = rng.standard_normal((M, K)).astype(np.float32)
    p = pack(rng.standard_normal((K, N)).astype(np.float32))
    c = np.empty((M, N), np.float32)
    n = 2000
    loop(1, a, p, c)
    best = float("inf")
    for _ in range(repeats):
        t0 = clock()
        loop(n, a, p, c)
        best = min(best, clock() - t0)
    return 2 * M * K * N * n / best / 1e9


def first_call_seconds(cells=("lstm", "gru", "rnn")) -> dict:
    """Seconds of the first forward and backward of a tiny float32 layer of each cell in this
    process: numba's compilation, or the load from its on-disk cache when an earlier process
    compiled the kernels (``--cold`` points numba at an empty cache)."""
    import numpy as np

    from rnnkit.nn.recurrent import make_recurrent

    out = {}
    x = np.ones((2, 3, 4), np.float32)
    for cell in cells:
        layer = make_recurrent(cell, 4, 4, rng=0)
        t0 = time.perf_counter()
        y, _, cache = layer.forward(x)
        layer.backward(np.ones_like(y), cache)
        out[cell] = time.perf_counter() - t0
    return out


def timed_row(m: dict, **sizes) -> dict:
    """One result row from a :func:`measure` result."""
    med = m["median_s"]
    return {**sizes, "ratio": med["torch"] / med["rnnkit"], "spread": m["spread"],
            "rnnkit_s": med["rnnkit"], "torch_s": med["torch"], "rounds": m["rounds"],
            "rounds_s": m["all_s"]}  # fmt: skip


def cold_numba_cache() -> str:
    """Point numba at a fresh, empty cache directory (before numba is imported), so that the
    first calls measure compilation rather than a load from the cache."""
    import tempfile

    os.environ["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="rnnkit-numba-")
    return os.environ["NUMBA_CACHE_DIR"]


def start(prog: str, threads: int | None, clock: str):
    """Common start of a benchmark: threads set, rnnkit importable, the machine described.

    Returns ``(info, clock function)``; ``clock`` is "wall" (``time.perf_counter``) or "cpu"
    (``time.process_time``).
    """
    threads_env(threads)  # for BLAS libraries the ctypes route cannot reach
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    info = {"load_before": load_average()}
    info.update(machine_info(*setup_threads(threads)))
    if clock == "cpu" and info["numpy_blas_threads"] > 1:
        print(f"{prog}: warning: --clock cpu with more than one thread counts every thread's "
              "CPU time, spin-waiting included", file=sys.stderr)
    return info, time.perf_counter if clock == "wall" else time.process_time
