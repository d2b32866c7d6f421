"""Evaluate a checkpoint on a file; prints ``name: value`` lines.

Language models: perplexity (and bits per character for character models).  Other checkpoint
kinds print their own figures (accuracy, exact match, BLEU, ...).
"""

from __future__ import annotations

from ..train.options import positive_int


def add_arguments(p) -> None:
    p.add_argument("checkpoint", help="checkpoint directory or run directory")
    p.add_argument("file", help="text file (.gz and directories work too)")
    p.add_argument("--encoding", default="utf-8", help="text encoding of the file")
    p.add_argument("--batch-size", type=positive_int, default=10,
                   help="parallel streams the text is cut into (language models)")
    p.add_argument("--bptt", type=int, default=64,
                   help="window length; the state is carried across windows (language models)")
    p.add_argument("--beam", type=positive_int, default=None,
                   help="seq2seq: beam width for the beam-search figures (default: 5; greedy "
                        "figures are always reported)")
    p.add_argument("--max-len", type=positive_int, default=None,
                   help="seq2seq: longest output (default: the checkpoint's own)")
    p.add_argument("--format", default=None,
                   help="classifier/tagger: file format (default: from the file; see "
                        "train-classifier/train-tagger --help)")


def run(args) -> int:
    from ..tasks import checkpoint_task

    path, kind, evaluate = checkpoint_task(args.checkpoint, "evaluate")
    if evaluate is None:
        raise ValueError(f"{path}: cannot evaluate checkpoints of kind {kind!r}")
    figures = evaluate(path, args)
    for name, value in figures.items():
        if isinstance(value, float):
            print(f"{name}: {value:.4f}")
        else:
            print(f"{name}: {value}")
    return 0
