"""Evaluate a checkpoint on a file; prints ``name: value`` lines.

Language models: perplexity (and bits per character for character models).  Other checkpoint
kinds print their own figures (accuracy, exact match, BLEU, ...).
"""

from __future__ import annotations

import sys
import warnings

EVALUATORS: dict = {}  # kind -> function(checkpoint_path, args) -> dict of figures


def add_arguments(p) -> None:
    p.add_argument("checkpoint", help="checkpoint directory or run directory")
    p.add_argument("file", help="text file (.gz and directories work too)")
    p.add_argument("--encoding", default="utf-8", help="text encoding of the file")
    p.add_argument("--batch-size", type=int, default=10,
                   help="parallel streams the text is cut into (language models)")
    p.add_argument("--bptt", type=int, default=64,
                   help="window length; the state is carried across windows (language models)")
    p.add_argument("--beam", type=int, default=None,
                   help="seq2seq: beam width for the beam-search figures (default: 5; greedy "
                        "figures are always reported)")
    p.add_argument("--max-len", type=int, default=None,
                   help="seq2seq: longest output (default: the checkpoint's own)")
    p.add_argument("--format", default=None,
                   help="classifier/tagger: file format (default: from the file; see "
                        "train-classifier/train-tagger --help)")


def evaluate_lm_file(path, file, encoding="utf-8", batch_size=10, bptt=64) -> dict:
    from ..models.lm import load_lm
    from ..text.io import read_text
    from ..train.lm_task import evaluate_lm

    model, tokenizer, _ = load_lm(path)
    text = read_text(file, encoding)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ids = tokenizer.encode(text)
    for w in caught:
        print(f"rnnkit eval: warning: {w.message}", file=sys.stderr)
    if len(ids) < 2:
        raise ValueError(f"{file}: needs at least 2 tokens to evaluate, got {len(ids)}")
    r = evaluate_lm(model, ids, batch_size, bptt)
    figures = {"loss": r["loss"], "perplexity": r["ppl"]}
    if tokenizer.level == "char":
        figures["bits per char"] = r["bits"]
    figures["tokens"] = r["tokens"]
    return figures


def run(args) -> int:
    from ..checkpoint import find_checkpoint, load_checkpoint

    path = find_checkpoint(args.checkpoint)
    kind = load_checkpoint(path, weights_only=True).kind
    if kind == "lm":
        figures = evaluate_lm_file(path, args.file, args.encoding, args.batch_size, args.bptt)
    elif kind in EVALUATORS:
        figures = EVALUATORS[kind](path, args)
    else:
        import importlib

        try:
            mod = importlib.import_module(f"rnnkit.tasks.{kind}")
        except ImportError:
            raise ValueError(f"{path}: cannot evaluate checkpoints of kind {kind!r}") from None
        figures = mod.evaluate_checkpoint(path, args)
    for name, value in figures.items():
        if isinstance(value, float):
            print(f"{name}: {value:.4f}")
        else:
            print(f"{name}: {value}")
    return 0
