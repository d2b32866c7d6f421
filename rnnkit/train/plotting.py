"""Training plots.

matplotlib is imported inside the functions only.  Figures are drawn on the Agg canvas directly
(no pyplot, so no global backend switch and no open-figure registry) and written atomically:
to a temporary sibling first, then renamed over ``path``.
"""

from __future__ import annotations

import math
import os
import secrets
from pathlib import Path

import numpy as np

from ..errors import DataError, ShapeError

_CLIP_KEYS = ("clip", "clip_norm", "max_norm", "grad_clip")


def plot_training(metrics: list[dict], path, *, smoothing: float = 0.9) -> Path:
    """Plot a run's metrics (records as written by :class:`rnnkit.train.runlog.MetricsLog`).

    Panels, each drawn only when its keys appear in the records:

    * loss: per-step ``loss`` (faint) and its bias-corrected exponential moving average
      (``smoothing`` is the EMA weight), per-epoch ``train_loss`` and ``valid_loss``;
    * gradient norm: per-step pre-clip ``grad_norm`` on a log scale, the clip threshold (the
      first of ``clip``/``clip_norm``/``max_norm``/``grad_clip`` found in any record) and red
      crosses where ``clipped`` is true;
    * accuracy: any ``*accuracy``/``*acc`` key of step or epoch records;
    * BLEU: any ``*bleu`` key.

    The x axis is cumulative ``tokens`` when every step record has it, else ``step``; epoch
    records without their own x sit at the last step logged before them.  After a resume the
    re-logged stretch replaces the earlier one.
    """
    steps = [m for m in metrics if m.get("event") == "step"]
    epochs = [m for m in metrics if m.get("event") == "epoch"]
    if not steps and not epochs:
        raise DataError("plot_training: no 'step' or 'epoch' records to plot")
    if steps:
        xkey = "tokens" if all(_num(m.get("tokens")) for m in steps) else "step"
    else:
        xkey = "epoch"
    step_x, epoch_x, last_x = [], [], math.nan
    for m in metrics:
        if m.get("event") == "step":
            last_x = m[xkey] if _num(m.get(xkey)) else len(step_x) + 1
            step_x.append(last_x)
        elif m.get("event") == "epoch":
            own = m.get(xkey)
            epoch_x.append(own if _num(own) else last_x if steps else len(epoch_x) + 1)

    from matplotlib.figure import Figure

    panels = [("loss", _loss_panel)]
    if any(_num(m.get("grad_norm")) for m in steps):
        panels.append(("gradient norm", _grad_panel))
    for title, suffixes in (("accuracy", ("accuracy", "acc")), ("BLEU", ("bleu",))):
        keys = _keys_ending(steps + epochs, suffixes)
        if keys:
            panels.append((title, _metric_panel(keys)))
    fig = Figure(figsize=(9, 2.8 * len(panels)), layout="constrained")
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    data = {"steps": steps, "epochs": epochs, "step_x": step_x, "epoch_x": epoch_x,
            "metrics": metrics, "smoothing": smoothing}
    for ax, (title, draw) in zip(axes, panels):
        draw(ax, **data)
        ax.set_title(title, loc="left", fontsize=10)
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    axes[-1].set_xlabel(xkey)
    return _save(fig, path)


def plot_curves(curves: dict[str, np.ndarray], path, *, logy: bool = True,
                xlabel: str = "time step", ylabel: str = "", title: str = "",
                x: np.ndarray | None = None) -> Path:
    """One line per named 1-D curve, against ``x`` (default ``0..N-1``); e.g. the gradient norm
    reaching each time step.  With ``logy``, values <= 0 are left out."""
    if not curves:
        raise DataError("plot_curves: no curves to plot")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4.5), layout="constrained")
    ax = fig.subplots()
    for name, y in curves.items():
        y = np.asarray(y, dtype=np.float64)
        if y.ndim != 1:
            raise ShapeError(f"plot_curves: expected curve {name!r} of shape (N,), got {y.shape}")
        xs = np.arange(len(y)) if x is None else np.asarray(x, dtype=np.float64)
        if xs.shape != y.shape:
            raise ShapeError(
                f"plot_curves: expected curve {name!r} of shape {xs.shape}, got {y.shape}"
            )
        ax.plot(xs, _positive(y) if logy else _finite(y), label=str(name), lw=1.3)
    if logy:
        ax.set_yscale("log")
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.grid(True, which="both", alpha=0.3)
    if len(curves) > 1:
        ax.legend(fontsize=8)
    return _save(fig, path)


# -- panels -------------------------------------------------------------------------------------


def _loss_panel(ax, *, steps, epochs, step_x, epoch_x, smoothing, **_):
    x, loss = _column(steps, step_x, "loss")
    if len(x):
        ax.plot(x, _finite(loss), color="C0", alpha=0.25, lw=0.8)
        ax.plot(x, _ema(loss, smoothing), color="C0", lw=1.5, label="train (smoothed)")
    for key, style in (("train_loss", {"color": "C0", "marker": "o", "mfc": "none", "ls": ""}),
                       ("valid_loss", {"color": "C1", "marker": "s", "ls": "-"})):
        x, y = _column(epochs, epoch_x, key)
        if len(x):
            ax.plot(x, y, label=key.replace("_", " "), **style)
    ax.set_ylabel("loss")


def _grad_panel(ax, *, steps, step_x, metrics, **_):
    x, g = _column(steps, step_x, "grad_norm")
    ok = np.isfinite(g) & (g > 0)
    ax.plot(x[ok], g[ok], color="C2", lw=0.8, label="pre-clip norm")
    for bad in x[~np.isfinite(g)][:20]:
        ax.axvline(bad, color="C3", ls=":", lw=1)
    clipped = [i for i, m in enumerate(steps) if m.get("clipped") is True]
    if clipped:
        cx, cg = _column([steps[i] for i in clipped], [step_x[i] for i in clipped], "grad_norm")
        keep = np.isfinite(cg) & (cg > 0)
        ax.plot(cx[keep], cg[keep], "x", color="C3", ms=5, label=f"clipped ({len(clipped)})")
    clip = next((m[k] for m in metrics for k in _CLIP_KEYS if _num(m.get(k))), None)
    if clip is not None and clip > 0:
        ax.axhline(clip, color="k", ls="--", lw=1, label=f"clip threshold {clip:g}")
    ax.set_yscale("log")
    ax.set_ylabel("‖g‖")


def _metric_panel(keys):
    def draw(ax, *, steps, epochs, step_x, epoch_x, **_):
        for key in keys:
            for records, xs, style in ((steps, step_x, {"lw": 1}),
                                       (epochs, epoch_x, {"marker": "o"})):
                x, y = _column(records, xs, key)
                if len(x):
                    ax.plot(x, y, label=key, **style)
    return draw


# -- helpers ------------------------------------------------------------------------------------


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _keys_ending(records, suffixes) -> list[str]:
    keys = {k for m in records for k, v in m.items() if _num(v) and k.lower().endswith(suffixes)}
    return sorted(keys)


def _column(records, xs, key) -> tuple[np.ndarray, np.ndarray]:
    """(x, value) of the records that have a numeric ``key``; where x goes backwards (a resumed
    run re-logging steps), the later records replace the earlier ones."""
    pts: list[tuple[float, float]] = []
    for m, x in zip(records, xs):
        if not _num(m.get(key)):
            continue
        while pts and pts[-1][0] >= x:
            pts.pop()
        pts.append((x, m[key]))
    arr = np.array(pts, dtype=np.float64).reshape(-1, 2)
    return arr[:, 0], arr[:, 1]


def _ema(y: np.ndarray, weight: float) -> np.ndarray:
    """Bias-corrected exponential moving average; non-finite values are skipped."""
    out = np.full_like(y, np.nan)
    avg = norm = 0.0
    for i, v in enumerate(y):
        if np.isfinite(v):
            avg = weight * avg + (1 - weight) * v
            norm = weight * norm + (1 - weight)
        if norm > 0:
            out[i] = avg / norm
    return out


def _finite(y: np.ndarray) -> np.ndarray:
    return np.where(np.isfinite(y), y, np.nan)


def _positive(y: np.ndarray) -> np.ndarray:
    return np.where(np.isfinite(y) & (y > 0), y, np.nan)


def _save(fig, path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{secrets.token_hex(4)}")
    try:
        fig.savefig(tmp, format=path.suffix[1:].lower() or "png", dpi=110)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def png_path(path, default_name: str):
    """The file a PNG for ``path`` goes to: ``path/default_name`` for a directory (an
    existing one, or a path ending in a slash), else ``path`` with ``.png`` added when it has
    no suffix (as matplotlib would), so that the path reported is the path written."""
    from pathlib import Path

    text = str(path)
    path = Path(path)
    if path.is_dir() or text.endswith(("/", "\\")):
        return path / default_name
    return path if path.suffix else path.with_name(path.name + ".png")
