"""minGRU and minLSTM against the LSTM on Tiny Shakespeare, at equal wall time.

Each cell trains a character model with the same budget (``--minutes`` each), the same width,
depth, optimiser and batches (the reference settings of a 2 x 512 torch LSTM: dropout 0.2,
Adam 2e-3, B 64, T 128, clip 1.0) on the nanoGPT split (first 90 % of the characters for
training, last 10 % for validation), through :func:`rnnkit.tasks.lm.train.train_lm`, the
function behind ``rnnkit train``.  The table gives parameters, training tokens per second
(steps x B x T / training time) and the best validation loss in nats per character.

    .venv/bin/python benchmarks/min_cells.py --smoke            # ~1 minute: a tiny model each
    .venv/bin/python benchmarks/min_cells.py --layer-speed      # the stacks alone, ~1 minute
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/min_cells.py --minutes 25

The data: ``--data`` or ``$RNNKIT_DATA/tinyshakespeare/input.txt`` (default
``../shared/data``).  Runs go to ``--out`` (default ``runs/min_cells``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CELLS = ("lstm", "mingru", "minlstm")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=None, help="Tiny Shakespeare's input.txt")
    p.add_argument("--minutes", type=float, default=25.0, help="budget per cell")
    p.add_argument("--cells", default=",".join(CELLS), help="comma-separated cells")
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--smoke", action="store_true",
                   help="a 2 x 64 model, B 16, T 32, 15 s per cell: checks the script runs")
    p.add_argument("--out", default="runs/min_cells")
    p.add_argument("--layer-speed", action="store_true",
                   help="only time forward + backward of each stack (B 64, T 128, D 64)")
    args = p.parse_args(argv)
    if args.layer_speed:
        return layer_speed(args)

    from benchutil import load_average

    from rnnkit.tasks.lm.model import LMConfig
    from rnnkit.tasks.lm.train import train_lm
    from rnnkit.train.trainer import TrainConfig

    path = Path(args.data or Path(os.environ.get("RNNKIT_DATA", "../shared/data"))
                / "tinyshakespeare" / "input.txt")
    text = path.read_text(encoding="utf-8")
    cut = int(0.9 * len(text))
    texts = {"train": text[:cut], "valid": text[cut:], "test": None}
    B, T, H, minutes = 64, 128, args.hidden, args.minutes
    if args.smoke:
        B, T, H, minutes = 16, 32, 64, 0.25
        texts["valid"] = texts["valid"][:20_000]
    print(f"Tiny Shakespeare {path}: {len(texts['train']):,} training characters; "
          f"{args.layers} x {H}, B {B}, T {T}, {minutes:g} min per cell; "
          f"load average before: {load_average():.2f}")
    rows = []
    for cell in args.cells.split(","):
        done = finished(Path(args.out) / cell, B * T)
        if done is not None:  # a run that ended earlier: read back, not repeated
            rows.append((cell, *done))
            continue
        model = LMConfig(vocab_size=1, cell=cell, embed_size=64, hidden_size=H,
                         num_layers=args.layers, dropout=0.2)
        train = TrainConfig(minutes=minutes, epochs=10**6, lr=2e-3, clip=1.0, seed=1,
                            progress=False)
        t0 = time.monotonic()
        r = train_lm(texts, Path(args.out) / cell, model=model, level="char", train=train,
                     batch_size=B, bptt=T, eval_batch_size=32)
        s = r.summary
        tps = s["step"] * B * T / max(s["time"], 1e-9)
        best = (s.get("best_figures") or {}).get("loss", float("nan"))
        rows.append((cell, r.model.num_parameters(), tps, best, time.monotonic() - t0,
                     load_average()))
    print(f"\n{'cell':8s} {'params':>10s} {'tokens/s':>9s} {'valid nats/char':>16s} "
          f"{'wall s':>7s} {'load':>5s}")
    for cell, n, tps, best, wall, load in rows:
        print(f"{cell:8s} {n:10,d} {tps:9,.0f} {best:16.4f} {wall:7.0f} {load:5.2f}")
    return 0


def finished(run: Path, tokens_per_step: int):
    """``(params, tokens/s, best valid loss, wall s, load)`` of a run in ``run`` that
    reached its end, from its metrics.jsonl; None for a run that did not."""
    import json

    path = run / "metrics.jsonl"
    if not path.is_file():
        return None
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    end = next((r for r in records if r.get("event") == "end"), None)
    start = next((r for r in records if r.get("event") == "start"), None)
    if end is None or start is None:
        return None
    best = min((r["valid_loss"] for r in records if "valid_loss" in r), default=float("nan"))
    seconds = max(end["time"], 1e-9)  # as for a live run: steps x B x T over the run's clock
    return start["params"], end["step"] * tokens_per_step / seconds, best, seconds, float("nan")


def layer_speed(args) -> int:
    """Training tokens/s of each recurrent stack alone: forward and backward of one window."""
    import numpy as np
    from benchutil import load_average, measure

    from rnnkit.nn.factory import make_layer

    B, T, D, H = 64, 128, 64, args.hidden
    x = np.random.default_rng(0).standard_normal((B, T, D)).astype(np.float32)
    fns = {}
    for cell in args.cells.split(","):
        layer = make_layer(cell, D, H, args.layers, rng=0)

        def run(layer=layer):
            out, _, cache = layer.forward(x)
            layer.backward(np.ones_like(out), cache, consume_cache=True)

        fns[cell] = run
    print(f"{args.layers} x {H}, B {B}, T {T}, D {D}, float32; load average before: "
          f"{load_average():.2f}")
    m = measure(fns, 3, 0.5, 60.0)["median_s"]
    for cell, s in m.items():
        print(f"{cell:8s} {1e3 * s:8.1f} ms per window  {B * T / s:9,.0f} tokens/s  "
              f"({m['lstm'] / s if 'lstm' in m else float('nan'):.2f}x the LSTM)")
    print(f"load average after: {load_average():.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
