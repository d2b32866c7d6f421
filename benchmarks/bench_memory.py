"""Peak memory of one LSTM training step (forward and backward) at T = 1000, B = 32,
D = H = 512, float32, one layer: rnnkit against torch.nn.LSTM.

Each library runs in a fresh subprocess.  After building the layer and the input, and after one
small warm-up step (numba's kernels, torch's kernel choice), the script resets the kernel's
resident-set high-water mark (``echo 5 > /proc/self/clear_refs``), notes the resident set
(``VmRSS``), runs the step and reads the high-water mark (``VmHWM``): the difference is the
extra memory the step needed at its peak, whatever allocated it (NumPy, torch's allocator,
oneDNN scratch space).  For rnnkit, ``tracemalloc`` (which sees every NumPy allocation)
gives a second figure.  Linux only.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python benchmarks/bench_memory.py
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from benchutil import load_average

T, B, H = 1000, 32, 512


def _status(key: str) -> int:
    with open("/proc/self/status") as f:
        for ln in f:
            if ln.startswith(key + ":"):
                return int(ln.split()[1]) * 1024
    raise RuntimeError(f"no {key} in /proc/self/status")


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def run_rnnkit() -> dict:
    import tracemalloc

    import numpy as np

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from rnnkit.nn.cells.dispatch import backend
    from rnnkit.nn.recurrent import LSTM

    layer = LSTM(H, H, rng=0)
    x = np.random.default_rng(0).standard_normal((B, T, H)).astype(np.float32)
    dout = np.ones((B, T, H), np.float32)
    y, _, cache = layer.forward(x[:, :5])  # warm-up: compile or load the kernels
    layer.backward(dout[:, :5], cache)
    del y, cache
    _reset_peak()
    base = _status("VmRSS")
    tracemalloc.start()
    out, _, cache = layer.forward(x)
    layer.backward(dout, cache, consume_cache=True)
    traced = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {"peak_extra_bytes": _status("VmHWM") - base, "tracemalloc_peak_bytes": traced,
            "kernels": backend()}


def run_torch() -> dict:
    import torch

    torch.manual_seed(0)
    lstm = torch.nn.LSTM(H, H, batch_first=True)
    x = torch.randn(B, T, H)
    out, _ = lstm(x[:, :5])  # warm-up
    out.sum().backward()
    del out
    lstm.zero_grad()
    _reset_peak()
    base = _status("VmRSS")
    out, _ = lstm(x)
    out.backward(torch.ones_like(out))
    return {"peak_extra_bytes": _status("VmHWM") - base}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Peak memory of an LSTM training step, "
                                 "rnnkit vs torch (T 1000, B 32, H 512).")
    ap.add_argument("--threads", type=int, default=1, help="BLAS / torch threads (default 1)")
    ap.add_argument("--json", metavar="FILE", default=None, help="also write the results")
    ap.add_argument("--child", choices=("rnnkit", "torch"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(run_rnnkit() if args.child == "rnnkit" else run_torch()))
        return 0
    env = dict(os.environ, **{v: str(args.threads) for v in (
        "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")})
    load = load_average()
    res = {}
    for lib in ("rnnkit", "torch"):
        out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", lib],
                             env=env, capture_output=True, text=True, check=True).stdout
        res[lib] = json.loads(out.strip().splitlines()[-1])
    mib = 1 << 20
    print(f"LSTM training step, T={T} B={B} D=H={H}, float32, {args.threads} thread(s); "
          f"load average {load:.2f}")
    print(f"rnnkit ({res['rnnkit']['kernels']} kernels): peak extra RSS "
          f"{res['rnnkit']['peak_extra_bytes'] / mib:,.0f} MiB (tracemalloc peak "
          f"{res['rnnkit']['tracemalloc_peak_bytes'] / mib:,.0f} MiB)")
    print(f"torch: peak extra RSS {res['torch']['peak_extra_bytes'] / mib:,.0f} MiB")
    print(f"ratio rnnkit / torch: "
          f"{res['rnnkit']['peak_extra_bytes'] / res['torch']['peak_extra_bytes']:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"load": load, **res}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
