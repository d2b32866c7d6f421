"""Speed of rnnkit's RNN, GRU and LSTM layers against ``torch.nn`` on the CPU, side by side.

What it measures, in one process, float32, batch-first, one direction:

* **inference**: ``layer.forward(x, grad=False)`` with ``layer.eval()`` (rnnkit's no-grad
  forward: no history kept for a backward) against ``module(x)`` under ``torch.no_grad()``;
* **training**: forward plus backward with an upstream gradient of ones on the output; rnnkit
  ``zero_grad(); forward(x); backward(ones, cache)``, torch ``zero_grad(); module(x)[0]
  .backward(ones)`` with the weights and the input requiring gradients (the input's gradient
  is cleared each iteration too);

both reported as tokens per second, ``B * T / seconds``, at the sizes in ``SIZES``; and

* **generation**: one step at batch 1 with the state carried from the previous step, rnnkit
  ``layer.step(x_t, state)`` against ``module(x[None, None], state)`` under ``no_grad``,
  reported as microseconds per step.

The ratio column is rnnkit / torch in speed (tokens/s, or torch's us per step over rnnkit's):
above 1 means rnnkit is faster.  Both libraries get the same weights (copied from rnnkit into
the torch module; a one-time check confirms their outputs agree) and the same number of
threads: NumPy's BLAS thread count, which ``torch.set_num_threads`` is set to (``--threads N``
sets both).  NumPy's element-wise operations always run on one thread.

Method: each case is warmed up (at least two calls per library, more for cheap calls), then
timed in interleaved rounds: a round times a batch of rnnkit calls and a batch of torch calls
back to back (alternating which goes first), each batch lasting about ``target`` seconds, with
``time.perf_counter`` (``--clock cpu``: ``time.process_time``, which leaves out time spent
waiting for a CPU on a shared machine) and the garbage collector paused; 11 rounds (3 with
``--quick``), fewer
(never under 3) where a case would take more than about 10 s.  The time per call is the median
over the rounds, and interleaving makes the ratio robust to slow drift in machine speed.
``spread`` is the larger of the two libraries' (max - min) / median over the rounds: a large
value means the machine was busy or unsteady and the row deserves a second run.  The 1-minute
load average before and after the run is printed, since other processes distort timings.

    .venv/bin/python benchmarks/bench_layers.py                 # full run, a few minutes
    .venv/bin/python benchmarks/bench_layers.py --threads 1 --clock cpu   # on a shared machine
    .venv/bin/python benchmarks/bench_layers.py --quick --cells lstm --threads 1 --json r.json

The header names the CPU and its vector flags, every BLAS loaded with the kernel (core type)
threadpoolctl reports, ``OPENBLAS_CORETYPE`` / ``OPENBLAS_L2_SIZE``, which cell kernels rnnkit
runs (``RNNKIT_KERNELS``) and the load average.  It then reports the first forward and
backward of each cell (numba's compilation, or the load from its cache; ``--cold`` forces
compilation) and, after the table, NumPy's sgemm GFLOP/s and the fraction of it that training
reaches at H >= 512 (the FLOPs of the matrix products over the measured time).  With one
thread it then gives each row's ceiling: the ratio rnnkit would reach if all its matrix
products ran at the speed of its packed micro-kernel on operands in cache (this core's
practical peak, the better of a measurement before and one after the table: on these
machines it moved between 97 and 130 GFLOP/s from run to run) and nothing else took any
time; a target above the ceiling cannot be met on this CPU by any implementation of the same
products.  Published figures: an idle machine, ``env -u OPENBLAS_CORETYPE -u
OPENBLAS_L2_SIZE`` on the command.
"""

from __future__ import annotations

import argparse
import json
import sys

from benchutil import (
    cold_numba_cache,
    first_call_seconds,
    fma_peak_gflops,
    load_average,
    measure,
    print_header,
    sgemm_gflops,
    start,
    timed_row,
)

# (B, T, D, H, layers) for the inference and training rows.
SIZES = [(16, 50, 32, 32, 1), (32, 100, 64, 128, 1), (64, 100, 256, 512, 1), (20, 35, 200, 200, 2)]
GEN_SIZE = 256  # D = H for step-by-step generation at batch 1, one layer
CELLS = ("lstm", "gru", "rnn")


# -- models ------------------------------------------------------------------------------
def make_pair(cell: str, D: int, H: int, L: int):
    """An rnnkit layer and a torch module with the same float32 weights."""
    import numpy as np
    import torch

    from rnnkit.nn.recurrent import make_recurrent

    ours = make_recurrent(cell, D, H, num_layers=L, init="pytorch", rng=np.random.default_rng(0))
    klass = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cell]
    theirs = klass(D, H, num_layers=L, batch_first=True)

    def t(a):
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))

    with torch.no_grad():
        for k in range(L):
            p = ours.dirs[k][0].param
            getattr(theirs, f"weight_ih_l{k}").copy_(t(p["W_x"].T))
            getattr(theirs, f"weight_hh_l{k}").copy_(t(p["W_h"].T))
            b_ih, b_hh = getattr(theirs, f"bias_ih_l{k}"), getattr(theirs, f"bias_hh_l{k}")
            b_ih.copy_(t(p["b"]))
            b_hh.zero_()
            if cell == "gru":  # rnnkit's b_hn sits inside r * (h W_hn + b_hn), like b_hh_n
                b_hh[2 * H :] = t(p["b_hn"])
    return ours, theirs


def check_same(cell, ours, theirs, D: int) -> float:
    """Largest |difference| of the two outputs on a small random input (must be ~1e-6)."""
    import numpy as np
    import torch

    x = np.random.default_rng(1).standard_normal((3, 5, D)).astype(np.float32)
    ours.eval()
    out, _, _ = ours.forward(x)
    with torch.no_grad():
        ref, _ = theirs(torch.from_numpy(x))
    err = float(np.abs(out - ref.numpy()).max())
    if not err < 1e-4:
        raise SystemExit(f"bench_layers: {cell} outputs of rnnkit and torch differ by {err:.2e}")
    return err


# -- one case per function: each returns {"rnnkit": callable, "torch": callable} ----------
def inference_fns(cell, B, T, D, H, L):
    import numpy as np
    import torch

    ours, theirs = make_pair(cell, D, H, L)
    check_same(cell, ours, theirs, D)
    x = np.random.default_rng(2).standard_normal((B, T, D)).astype(np.float32)
    xt = torch.from_numpy(x.copy())
    ours.eval()
    theirs.eval()

    def run_ours():
        ours.forward(x, grad=False)

    def run_theirs():
        with torch.no_grad():
            theirs(xt)

    return {"rnnkit": run_ours, "torch": run_theirs}


def training_fns(cell, B, T, D, H, L):
    import numpy as np
    import torch

    ours, theirs = make_pair(cell, D, H, L)
    check_same(cell, ours, theirs, D)
    x = np.random.default_rng(2).standard_normal((B, T, D)).astype(np.float32)
    dout = np.ones((B, T, H), np.float32)
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    doutt = torch.ones(B, T, H)
    ours.train()
    theirs.train()

    def run_ours():
        ours.zero_grad()
        _, _, cache = ours.forward(x)
        ours.backward(dout, cache)

    def run_theirs():
        theirs.zero_grad()
        xt.grad = None
        out, _ = theirs(xt)
        out.backward(doutt)

    return {"rnnkit": run_ours, "torch": run_theirs}


def generation_fns(cell, H):
    import numpy as np
    import torch

    ours, theirs = make_pair(cell, H, H, 1)
    check_same(cell, ours, theirs, H)
    ours.eval()
    theirs.eval()
    x = np.random.default_rng(2).standard_normal((1, H)).astype(np.float32)
    xt = torch.from_numpy(x.copy()).reshape(1, 1, H)
    box = {"ours": ours.initial_state(1), "theirs": None}
    if cell == "lstm":
        box["theirs"] = (torch.zeros(1, 1, H), torch.zeros(1, 1, H))
    else:
        box["theirs"] = torch.zeros(1, 1, H)

    def run_ours():
        _, box["ours"] = ours.step(x, box["ours"])

    def run_theirs():
        with torch.no_grad():
            _, box["theirs"] = theirs(xt, box["theirs"])

    return {"rnnkit": run_ours, "torch": run_theirs}


def print_rows(rows: list) -> None:
    seq = [r for r in rows if r["mode"] != "generation"]
    gen = [r for r in rows if r["mode"] == "generation"]
    if seq:
        print()
        print(
            f"{'cell':<5} {'mode':<9} {'B':>3} {'T':>4} {'D':>4} {'H':>4} {'L':>2} "
            f"{'rnnkit tok/s':>13} {'torch tok/s':>13} {'ratio':>6} {'spread':>7}"
        )
        for r in seq:
            print(
                f"{r['cell']:<5} {r['mode']:<9} {r['B']:>3} {r['T']:>4} {r['D']:>4} "
                f"{r['H']:>4} {r['L']:>2} {r['rnnkit_tok_s']:>13,.0f} "
                f"{r['torch_tok_s']:>13,.0f} {r['ratio']:>6.2f} {r['spread']:>6.0%}"
            )
    if gen:
        print()
        print(
            f"{'cell':<5} generation, B=1, D=H={GEN_SIZE}, 1 layer   "
            f"{'rnnkit us/step':>14} {'torch us/step':>14} {'ratio':>6} {'spread':>7}"
        )
        for r in gen:
            print(
                f"{r['cell']:<5} {'':<37}{r['rnnkit_us']:>14.1f} {r['torch_us']:>14.1f} "
                f"{r['ratio']:>6.2f} {r['spread']:>6.0%}"
            )
    sys.stdout.flush()


def parse_args(argv=None):
    ap = argparse.ArgumentParser(
        description="rnnkit vs torch.nn layer speed on the CPU (float32, one process)."
    )
    ap.add_argument(
        "--quick",
        action="store_true",
        help="3 shorter rounds per case instead of 11 (about a minute in all)",
    )
    ap.add_argument(
        "--cells",
        default=",".join(CELLS),
        help=f"comma-separated subset of {','.join(CELLS)} (default: all)",
    )
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        metavar="N",
        help="threads for NumPy's BLAS and torch (default: as many as NumPy's BLAS uses)",
    )
    ap.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="wall: time.perf_counter (default); cpu: time.process_time, this process's CPU "
        "time, which leaves out time spent waiting for a CPU when other processes are busy "
        "(meaningful with --threads 1 only)",
    )
    ap.add_argument(
        "--cold",
        action="store_true",
        help="give numba an empty cache directory, so the first calls measure compilation",
    )
    ap.add_argument(
        "--json",
        metavar="FILE",
        default=None,
        help="also write the results and the machine description as JSON",
    )
    args = ap.parse_args(argv)
    cells = [c.strip() for c in args.cells.split(",") if c.strip()]
    bad = [c for c in cells if c not in CELLS]
    if bad or not cells:
        ap.error(f"--cells must be a subset of {','.join(CELLS)}, got {args.cells!r}")
    if args.threads is not None and args.threads < 1:
        ap.error(f"--threads must be at least 1, got {args.threads}")
    args.cells = cells
    return args


def train_flops(cell: str, B, T, D, H, L) -> float:
    """Floating-point operations of one training step (forward and backward) of the layer's
    matrix products: per layer the input and recurrent products forward, and three times
    that in all (the backward's input, weight and state gradients)."""
    G = {"lstm": 4, "gru": 3, "rnn": 1}[cell]
    return sum(3 * 2 * B * T * ((D if k == 0 else H) + H) * G * H for k in range(L))


def print_ceilings(rows: list, peak: float | None) -> None:
    """The largest ratio each row could reach: torch's time over the time of the layer's
    matrix products at ``peak`` GFLOP/s with nothing else taking any (one thread)."""
    seq = [r for r in rows if r["mode"] != "generation"]
    if peak is None or not seq:
        return
    print(f"\npacked micro-kernel on cached operands, one thread: {peak:.1f} GFLOP/s; the ceiling "
          "is the ratio if every matrix product ran at that speed and nothing else took time")
    for r in seq:
        f = train_flops(r["cell"], r["B"], r["T"], r["D"], r["H"], r["L"])
        if r["mode"] == "inference":
            f /= 3  # the forward products alone
        r["ceiling"] = r["torch_s"] / (f / (peak * 1e9))
        print(f"{r['cell']:<5} {r['mode']:<9} {(r['B'], r['T'], r['D'], r['H'], r['L'])}: "
              f"ratio {r['ratio']:.2f}, ceiling {r['ceiling']:.2f}")


def print_efficiency(rows: list, gflops: float) -> None:
    big = [r for r in rows if r["mode"] == "training" and r["H"] >= 512]
    if not big:
        return
    print(f"\nsgemm (NumPy, float32, 1024 x 1024, this thread count, same clock): "
          f"{gflops:.1f} GFLOP/s")
    for r in big:
        f = train_flops(r["cell"], r["B"], r["T"], r["D"], r["H"], r["L"])
        ours, theirs = f / r["rnnkit_s"] / 1e9, f / r["torch_s"] / 1e9
        r["rnnkit_gflops"], r["torch_gflops"] = ours, theirs
        print(f"{r['cell']} training H={r['H']}: rnnkit {ours:.1f} GFLOP/s ({ours / gflops:.0%} "
              f"of sgemm), torch {theirs:.1f} GFLOP/s ({theirs / gflops:.0%})")


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.cold:
        cold_numba_cache()
    info, clock = start("bench_layers", args.threads, args.clock)
    repeats, target, budget = (3, 0.03, 2.0) if args.quick else (11, 0.1, 10.0)
    info.update(repeats=repeats, target_s=target, case_budget_s=budget, clock=args.clock)
    print_header(info)
    first = first_call_seconds(args.cells)
    info["first_call_s"] = first
    print("first forward+backward per cell (" + ("numba compiling" if args.cold else
          "numba compiling, or loading its on-disk cache") + "): "
          + ", ".join(f"{c} {s:.2f} s" for c, s in first.items()))
    info["sgemm_gflops"] = sgemm_gflops(clock=clock)
    info["fma_peak_gflops"] = fma_peak_gflops(clock=clock)
    print(f"median of {repeats} interleaved rounds (at least 3, at most ~{budget:g} s per case) "
          f"of ~{target:g} s per library, {args.clock} clock; ratio > 1: rnnkit faster")

    rows = []
    for mode, make in (("inference", inference_fns), ("training", training_fns)):
        for cell in args.cells:
            for B, T, D, H, L in SIZES:
                m = measure(make(cell, B, T, D, H, L), repeats, target, budget, clock)
                row = timed_row(m, cell=cell, mode=mode, B=B, T=T, D=D, H=H, L=L)
                row["rnnkit_tok_s"] = B * T / row["rnnkit_s"]
                row["torch_tok_s"] = B * T / row["torch_s"]
                rows.append(row)
                print(f"  {mode} {cell} {(B, T, D, H, L)}: ratio {row['ratio']:.2f}",
                      file=sys.stderr, flush=True)  # fmt: skip
    for cell in args.cells:
        m = measure(generation_fns(cell, GEN_SIZE), repeats, target, budget, clock)
        row = timed_row(m, cell=cell, mode="generation", B=1, T=1, D=GEN_SIZE, H=GEN_SIZE, L=1)
        row["rnnkit_us"], row["torch_us"] = row["rnnkit_s"] * 1e6, row["torch_s"] * 1e6
        rows.append(row)
    info["load_after"] = load_average()
    print_rows(rows)
    print_efficiency(rows, info["sgemm_gflops"])
    if info["numpy_blas_threads"] == 1:  # the peak again: this core's clock drifts
        peaks = [g for g in (info["fma_peak_gflops"], fma_peak_gflops(clock=clock)) if g]
        info["fma_peak_gflops"] = max(peaks) if peaks else None
        print_ceilings(rows, info["fma_peak_gflops"])
    print(f"\n1-minute load average: {info['load_before']:.2f} before, "
          f"{info['load_after']:.2f} after ({info['logical_cpus']} logical CPUs)")  # fmt: skip
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": info, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
