"""Validation curves against wall time: one line per ``rnnkit train`` run, from its
``metrics.jsonl``, with reference points, as a PNG and a Markdown table.

Each run is ``LABEL=DIR``.  A point is every validation the run logged (the end of an epoch, or
``--eval-every``), at the run's clock (training plus validation, a resumed run's earlier time
included).  The table gives each run's best validation figure, when it was reached, the test
figure ``rnnkit train`` printed if its log is at ``DIR/train.log`` or given as
``LABEL=DIR:LOG``, and the run's training tokens per second.

    python benchmarks/valid_curves.py --metric ppl --out docs/img/ptb-valid-vs-time.png \\
        "2x650, 45 min=runs/ptb-650-base" "AWD 60 min=runs/ptb-60" \\
        --point "torch Zaremba small (reference machine)=27,112.8"
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path


def read_points(run: Path, metric: str) -> tuple[list[tuple[float, float]], float | None]:
    """(minutes, value) at each validation of the run, and its mean training tokens/s."""
    points, rates = [], []
    with open(run / "metrics.jsonl", encoding="utf-8") as f:
        for line in f:
            try:
                r = json.loads(line)
            except json.JSONDecodeError:
                continue
            if r.get("event") in ("epoch", "valid") and f"valid_{metric}" in r and "time" in r:
                v = r[f"valid_{metric}"]
                if isinstance(v, (int, float)) and math.isfinite(v):
                    points.append((r["time"] / 60, float(v)))
            elif r.get("event") == "step" and "tokens_per_s" in r:
                rates.append(float(r["tokens_per_s"]))
    return points, (sum(rates) / len(rates) if rates else None)


def test_figure(log: Path) -> float | None:
    """The test figure ``rnnkit train`` printed at the end of the log, if any."""
    if not log.is_file():
        return None
    m = re.findall(r"test (?:perplexity|loss)[^:]*: ([\d.]+)", log.read_text(errors="replace"))
    return float(m[-1]) if m else None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="LABEL=DIR or LABEL=DIR:LOG")
    ap.add_argument("--metric", default="ppl", help="ppl (word level) or loss (nats/char)")
    ap.add_argument("--point", action="append", default=[],
                    help="LABEL=MINUTES,VALUE: a reference result drawn as a marker")
    ap.add_argument("--series", action="append", default=[],
                    help="LABEL=M1,V1;M2,V2;...: a reference curve measured elsewhere (dashed)")
    ap.add_argument("--title", default="")
    ap.add_argument("--out", type=Path, required=True, help="the PNG to write")
    args = ap.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.8), layout="constrained")
    rows = []
    for spec in args.runs:
        label, _, where = spec.partition("=")
        if not where:
            sys.exit(f"valid_curves.py: expected LABEL=DIR, got {spec!r}")
        run, _, log = where.partition(":")
        run = Path(run)
        if not (run / "metrics.jsonl").is_file():
            sys.exit(f"valid_curves.py: {run}: no metrics.jsonl (not an rnnkit train run?)")
        points, rate = read_points(run, args.metric)
        if not points:
            sys.exit(f"valid_curves.py: {run}: no validation with valid_{args.metric} logged")
        xs, ys = zip(*points)
        ax.plot(xs, ys, marker="o", ms=3, lw=1.3, label=label)
        best_at = min(points, key=lambda p: p[1])
        rows.append((label, best_at[1], best_at[0], xs[-1],
                     test_figure(Path(log) if log else run / "train.log"), rate))
    for spec in args.series:
        label, _, pts = spec.partition("=")
        try:
            xy = [tuple(float(v) for v in p.split(",")) for p in pts.split(";")]
            xs, ys = zip(*xy)
        except ValueError:
            sys.exit(f"valid_curves.py: --series: expected LABEL=M1,V1;M2,V2;..., got {spec!r}")
        ax.plot(xs, ys, ls="--", marker=".", lw=1.0, label=label)
    for spec in args.point:
        label, _, xy = spec.partition("=")
        try:
            x, y = (float(v) for v in xy.split(","))
        except ValueError:
            sys.exit(f"valid_curves.py: --point: expected LABEL=MINUTES,VALUE, got {spec!r}")
        ax.plot([x], [y], marker="*", ms=11, ls="none", label=label)
    if args.metric == "ppl":
        ax.set_yscale("log")
    ax.set(xlabel="wall time (minutes, validation included)",
           ylabel=f"validation {'perplexity' if args.metric == 'ppl' else 'loss (nats)'}",
           title=args.title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"| run | best valid {args.metric} | at (min) | run length (min) | test | "
          "train tokens/s |")
    print("|---|---|---|---|---|---|")
    for label, best, at, end, test, rate in rows:
        print(f"| {label} | {best:.3f} | {at:.1f} | {end:.1f} | "
              f"{'-' if test is None else f'{test:.2f}'} | "
              f"{'-' if rate is None else f'{rate:,.0f}'} |")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
