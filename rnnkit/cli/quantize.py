"""Store a checkpoint's weight matrices as int8 with one scale per output unit.

The result is a checkpoint directory that every command loads (eval, sample, predict,
translate, export, serve); its weights are dequantised when loaded.  Biases, and embeddings
unless --embeddings is given, stay in floating point.  See docs/checkpoint-format.md.
"""

from __future__ import annotations

import argparse


def add_arguments(p) -> None:
    p.add_argument("checkpoint", help="checkpoint directory or run directory")
    p.add_argument("--out", required=True, default=argparse.SUPPRESS,
                   help="the new checkpoint directory to write")
    p.add_argument("--embeddings", action="store_true",
                   help="also store the embedding tables as int8, one scale per row (token)")


def run(args) -> int:
    from ..deploy.quantize import quantize_checkpoint
    from ..train.checkpoint import find_checkpoint

    src = find_checkpoint(args.checkpoint)
    out = quantize_checkpoint(src, args.out, args.embeddings)
    size = sum(f.stat().st_size for f in out.iterdir())
    before = sum(f.stat().st_size for f in src.iterdir() if not f.name.startswith("train_state"))
    print(f"{out}: {size:,} bytes ({size / before:.2f} of the float checkpoint's {before:,} "
          "bytes without training state)")
    return 0
