"""How often gradient clipping fired, and the distribution of pre-clip gradient norms.

Read from a run's ``metrics.jsonl`` (written by :class:`rnnkit.train.trainer.Trainer`): *step*
records carry ``grad_norm`` (the global norm before clipping), ``clipped`` and ``clip`` (the
threshold) every ``log_every`` steps; *epoch* records carry ``clip_count``, the number of steps
of that epoch where the clip fired -- every step, not only the logged ones -- and ``step``, the
step count at the end of the epoch.  So the per-epoch clip rate is exact, while the norm
distribution is that of the logged steps (a regular sample).

>>> recs = [{"event": "step", "epoch": 1, "step": s, "grad_norm": g, "clipped": g > 1.0,
...          "clip": 1.0} for s, g in [(1, 0.5), (2, 2.0), (3, 4.0), (4, 0.8)]]
>>> recs.append({"event": "epoch", "epoch": 1, "step": 4, "clip_count": 2})
>>> r = clipping_report(recs)
>>> r.epochs[0]["steps"], r.epochs[0]["clipped"], r.epochs[0]["fraction"], r.quantiles["50%"]
(4, 2, 0.5, 1.4)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError

QUANTILES = (0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0)


@dataclass
class ClippingReport:
    threshold: float | None  # the clip threshold (None: clipping was off)
    epochs: list[dict]  # epoch, steps, clipped, fraction, logged, logged_clipped
    norms: np.ndarray  # pre-clip norms of the logged steps (finite ones)
    nonfinite: int  # logged steps whose norm was NaN or inf
    quantiles: dict[str, float] = field(default_factory=dict)
    counts: np.ndarray | None = None  # histogram over log-spaced bins
    edges: np.ndarray | None = None


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def clipping_report(metrics, bins: int = 20) -> ClippingReport:
    """Build the report from metric records (a list of dicts) or a run directory / metrics file."""
    if not isinstance(metrics, list):
        from ..train.runlog import read_metrics

        path = Path(metrics)
        metrics = read_metrics(path / "metrics.jsonl" if path.is_dir() else path)
    steps = [m for m in metrics if m.get("event") == "step" and _num(m.get("grad_norm"))]
    epoch_recs = {m["epoch"]: m for m in metrics
                  if m.get("event") == "epoch" and _num(m.get("epoch"))}  # last one wins
    if not steps and not epoch_recs:
        raise DataError("clipping report: the metrics hold no step or epoch records")
    threshold = next((m["clip"] for m in reversed(metrics) if _num(m.get("clip"))), None)
    if threshold is None:
        for m in metrics:  # the start record: {"train": {"clip": ...}}
            if isinstance(m.get("train"), dict) and _num(m["train"].get("clip")):
                threshold = m["train"]["clip"]

    # Where a resumed run re-logged steps, the later records replace the earlier ones.
    by_step = {}
    for m in steps:
        by_step[m.get("step", len(by_step))] = m
    steps = [by_step[k] for k in sorted(by_step)]

    epochs, prev_step = [], 0
    numbers = sorted(set(epoch_recs) | {m["epoch"] for m in steps if _num(m.get("epoch"))})
    for e in numbers:
        logged = [m for m in steps if m.get("epoch") == e]
        row = {"epoch": e, "logged": len(logged),
               "logged_clipped": sum(m.get("clipped") is True for m in logged)}
        rec = epoch_recs.get(e)
        if rec is not None and _num(rec.get("clip_count")) and _num(rec.get("step")):
            row["steps"] = int(rec["step"]) - prev_step
            row["clipped"] = int(rec["clip_count"])
            prev_step = int(rec["step"])
        else:  # no epoch record (the run stopped inside it): the logged steps only
            row["steps"], row["clipped"] = row["logged"], row["logged_clipped"]
        row["fraction"] = row["clipped"] / row["steps"] if row["steps"] else math.nan
        epochs.append(row)

    g = np.array([m["grad_norm"] for m in steps], dtype=np.float64)
    finite = g[np.isfinite(g)]
    report = ClippingReport(threshold, epochs, finite, int((~np.isfinite(g)).sum()))
    if finite.size:
        qs = np.quantile(finite, QUANTILES)
        report.quantiles = {f"{q:.0%}": float(v) for q, v in zip(QUANTILES, qs)}
        report.quantiles["mean"] = float(finite.mean())
        pos = finite[finite > 0]
        if pos.size:
            lo, hi = pos.min(), pos.max()
            if threshold:
                lo, hi = min(lo, threshold), max(hi, threshold)
            hi = hi * 1.0001 if hi > lo else lo * 2
            report.edges = np.geomspace(lo, hi, bins + 1)
            report.counts, _ = np.histogram(pos, report.edges)
    return report


def format_clipping(r: ClippingReport, width: int = 40) -> str:
    """The report as text: per-epoch clip rate, quantiles and a histogram of pre-clip norms."""
    lines = [f"clip threshold: {r.threshold if r.threshold else 'none (clipping off)'}", ""]
    lines.append("epoch   steps  clipped  fraction   (logged steps: clipped / logged)")
    for e in r.epochs:
        lines.append(f"{e['epoch']:>5}  {e['steps']:>6}  {e['clipped']:>7}  "
                     f"{e['fraction']:>8.1%}   ({e['logged_clipped']} / {e['logged']})")
    total = sum(e["steps"] for e in r.epochs)
    fired = sum(e["clipped"] for e in r.epochs)
    if total:
        lines.append(f"{'all':>5}  {total:>6}  {fired:>7}  {fired / total:>8.1%}")
    lines.append("")
    n = r.norms.size
    lines.append(f"pre-clip gradient norm over {n} logged steps"
                 + (f" ({r.nonfinite} non-finite left out)" if r.nonfinite else "") + ":")
    if r.quantiles:
        lines.append("  " + "  ".join(f"{k} {v:.4g}" for k, v in r.quantiles.items()))
    if r.threshold and n:
        lines.append(f"  above the threshold: {(r.norms > r.threshold).mean():.1%}")
    if r.counts is not None:
        lines.append("")
        top = max(int(r.counts.max()), 1)
        for c, lo, hi in zip(r.counts, r.edges[:-1], r.edges[1:]):
            mark = " <- clip" if r.threshold and lo <= r.threshold < hi else ""
            bar = "#" * round(width * c / top)
            lines.append(f"  {lo:>9.3g} - {hi:<9.3g} {c:>6}  {bar}{mark}")
    return "\n".join(lines)


def plot_clipping(r: ClippingReport, path) -> Path:
    """Histogram of pre-clip norms (log x, threshold marked) and the clip rate per epoch."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 6), layout="constrained")
    ax1, ax2 = fig.subplots(2, 1)
    if r.counts is not None:
        ax1.stairs(r.counts, r.edges, fill=True, alpha=0.6, color="C0")
        ax1.set_xscale("log")
    if r.threshold:
        ax1.axvline(r.threshold, color="C3", ls="--", label=f"clip threshold {r.threshold:g}")
        ax1.legend(fontsize=8)
    ax1.set(xlabel="pre-clip global gradient norm", ylabel="logged steps",
            title="distribution of gradient norms")
    ep = [e["epoch"] for e in r.epochs]
    ax2.bar(ep, [100 * e["fraction"] for e in r.epochs], color="C1")
    ax2.set(xlabel="epoch", ylabel="% of steps clipped", title="how often the clip fired")
    for ax in (ax1, ax2):
        ax.grid(True, alpha=0.3)
    FigureCanvasAgg(fig)
    from ..train.plotting import png_path

    path = png_path(path, "clipping.png")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path
