"""Train a sequence tagger (words [+ a character RNN per word] -> BiRNN -> a tag per word).

Data: CoNLL-U (UPOS, or XPOS with ``--column xpos``; ``.gz`` works) or ``word tag`` per line
with blank lines between sentences.  The best checkpoint (by validation token accuracy) is
tested on ``--test`` at the end.
"""

from __future__ import annotations

import argparse

from ...train.options import add_train_arguments, out_dir, positive_int
from ..classify.cli import (
    add_model_arguments,
    common_options,
    echo,
    model_options,
    run_training,
)


def add_arguments(p) -> None:
    d = p.add_argument_group("data")
    d.add_argument("--train", required=True, help="training file")
    d.add_argument("--valid", default=None, help="validation file (picks the best epoch)")
    d.add_argument("--test", default=None, help="test file (evaluated with the best model)")
    d.add_argument("--format", choices=("auto", "conllu", "wordtag"), default="auto",
                   help="auto: .conllu or 10 tab-separated columns -> conllu, else 'word tag'")
    d.add_argument("--column", choices=("upos", "xpos"), default="upos",
                   help="CoNLL-U tag column")
    d.add_argument("--encoding", default="utf-8")
    d.add_argument("--lowercase", action="store_true",
                   help="lowercase words for the word embedding (characters keep their case)")
    d.add_argument("--min-count", type=int, default=1, help="rarer words -> <unk>")
    d.add_argument("--max-vocab", type=int, default=None, help="largest vocabulary size")
    d.add_argument("--skip-bad", action="store_true",
                   help="skip sentences with malformed lines, with a warning, instead of "
                        "stopping")
    c = p.add_argument_group("character encoder")
    c.add_argument("--chars", action=argparse.BooleanOptionalAction,
                   default=True, help="add a character-level BiRNN encoding of every word")
    c.add_argument("--char-cell", choices=("rnn", "gru", "lstm"), default="lstm")
    c.add_argument("--char-embed", type=int, default=32, help="character embedding size")
    c.add_argument("--char-hidden", type=int, default=32, help="character RNN units per "
                                                               "direction")
    c.add_argument("--max-chars", type=positive_int, default=20,
                   help="longer words keep their first and last max-chars/2 characters")
    add_model_arguments(p, embed=100, hidden=128)
    add_train_arguments(p, epochs=10, lr=2e-3, batch_size=32)


def format_test(test: dict) -> str:
    """The line of test figures printed at the end."""
    line = f"test accuracy: {test['accuracy']:.4f}"
    if "oov_accuracy" in test:
        line += f"  unseen-word accuracy: {test['oov_accuracy']:.4f}"
    if "span_f1" in test:
        line += f"  span F1: {test['span_f1']:.4f}"
    return line


def run(args) -> int:
    from .task import train_tagger

    out = out_dir(args, "tagger")
    model_config = model_options(args)
    if args.chars:
        model_config.update(char_cell=args.char_cell, char_embed_size=args.char_embed,
                            char_hidden_size=args.char_hidden)
    chars = f" + char {args.char_cell.upper()} {args.char_hidden}" if args.chars else ""
    echo(f"rnnkit train-tagger: {'bi' if args.bidirectional else ''}{args.cell.upper()} "
         f"{args.layers}x{args.hidden}{chars} -> {out}")

    def fit():
        return train_tagger(
            args.train, args.valid, args.test, model_config=model_config, column=args.column,
            chars=args.chars, max_chars=args.max_chars, **common_options(args, out))

    return run_training("train-tagger", out, fit, format_test)
