"""Export a checkpoint to ONNX graphs (opset 17), checked by onnx.checker.

A language model gives OUT (the whole sequence) and OUT's stem + .step.onnx (one step with
explicit state); a seq2seq model OUT (the encoder) and stem + .decoder.onnx; a classifier or
tagger OUT alone.  Beside them, stem + .json: the kind, the files and the vocabulary.  The
inputs and outputs of every graph are listed in docs/export.md.
"""

from __future__ import annotations

import argparse


def add_arguments(p) -> None:
    p.add_argument("checkpoint", help="checkpoint directory or run directory")
    p.add_argument("--format", choices=["onnx"], default="onnx", help="export format")
    p.add_argument("--out", required=True, default=argparse.SUPPRESS,
                   help="the .onnx file to write (e.g. model.onnx)")


def run(args) -> int:
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise ValueError("--format onnx needs the onnx package: "
                         "pip install 'rnnkit[deploy]'") from None
    from ..deploy.export import export_checkpoint

    for path in export_checkpoint(args.checkpoint, args.out):
        print(path)
    return 0
