"""Train a sequence classifier (embedding -> (bi)RNN/GRU/LSTM -> pooling -> softmax).

Data: one example per line, ``label<TAB>text`` or ``label text`` (SST), or CSV with a header
(``--label-column``, ``--text-column``).  The best checkpoint (by validation accuracy) is
tested on ``--test`` at the end.  ``train-tagger`` (:mod:`rnnkit.tasks.tag.cli`) takes its
model options, their mapping onto the library's arguments and :func:`run_training` from here.
"""

from __future__ import annotations

import argparse
import sys
import warnings

from ...train.options import (
    add_awd_arguments,
    add_train_arguments,
    out_dir,
    positive_int,
    report_interrupt,
    resume_train_config,
    train_config,
)


def add_model_arguments(p, *, embed=128, hidden=128, bidirectional=True):
    """The model options shared by train-classifier and train-tagger; returns the group."""
    m = p.add_argument_group("model")
    m.add_argument("--cell", choices=("rnn", "gru", "lstm"), default="lstm")
    m.add_argument("--embed", type=int, default=embed, help="word embedding size")
    m.add_argument("--hidden", type=int, default=hidden, help="hidden units per direction")
    m.add_argument("--layers", type=int, default=1, help="stacked recurrent layers")
    m.add_argument("--bidirectional", action=argparse.BooleanOptionalAction,
                   default=bidirectional, help="bidirectional recurrent layers")
    m.add_argument("--dropout", type=float, default=0.0,
                   help="dropout between recurrent layers and before the output layer")
    m.add_argument("--embed-dropout", type=float, default=0.0, help="dropout on embeddings")
    add_awd_arguments(m, note="; not --embed-dropout, which drops single features")
    m.add_argument("--word-dropout", type=float, default=0.0,
                   help="replace training words by <unk> with this probability")
    m.add_argument("--vectors", default=None,
                   help="pre-trained word vectors (GloVe or word2vec text format, .gz too); "
                        "--embed must match their size")
    m.add_argument("--freeze-vectors", action="store_true",
                   help="keep the embeddings fixed during training")
    m.add_argument("--embed-init", choices=("uniform", "normal"), default="uniform",
                   help="random embeddings: U(-0.1, 0.1) or N(0, 1) (PyTorch's)")
    m.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    return m


def model_options(args) -> dict:
    """The model config fields that :func:`add_model_arguments`' options set."""
    return {"cell": args.cell, "embed_size": args.embed, "hidden_size": args.hidden,
            "num_layers": args.layers, "bidirectional": args.bidirectional,
            "dropout": args.dropout, "embed_dropout": args.embed_dropout,
            "word_dropout": args.word_dropout, "freeze_embeddings": args.freeze_vectors,
            "embed_init": args.embed_init, "dtype": args.dtype,
            "dropout_embed": args.dropout_embed, "weight_drop": args.weight_drop,
            "locked": args.locked}


def add_arguments(p) -> None:
    d = p.add_argument_group("data")
    d.add_argument("--train", required=True, help="training file")
    d.add_argument("--valid", default=None, help="validation file (picks the best epoch)")
    d.add_argument("--test", default=None, help="test file (evaluated with the best model)")
    d.add_argument("--format", choices=("auto", "tsv", "space", "csv"), default="auto",
                   help="auto: .csv -> csv, .tsv -> tsv, else tsv if the first line has a tab, "
                        "else 'label text'")
    d.add_argument("--label-column", default="label", help="CSV column holding the label")
    d.add_argument("--text-column", default="text", help="CSV column holding the text")
    d.add_argument("--encoding", default="utf-8")
    d.add_argument("--lowercase", action="store_true", help="lowercase words")
    d.add_argument("--min-count", type=int, default=1, help="rarer words -> <unk>")
    d.add_argument("--max-vocab", type=int, default=None, help="largest vocabulary size")
    d.add_argument("--min-label-count", type=positive_int, default=2,
                   help="refuse labels seen fewer times in training (catches lines whose label "
                        "is missing); 1 accepts any")
    d.add_argument("--skip-bad", action="store_true",
                   help="skip malformed lines with a warning instead of stopping")
    m = add_model_arguments(p)
    m.add_argument("--pooling", choices=("last", "mean", "max"), default="max",
                   help="last: final states (fwd ⊕ bwd); mean/max over real steps")
    add_train_arguments(p, epochs=10, lr=2e-3, batch_size=32)


def echo(s: str) -> None:
    print(s, file=sys.stderr)


def print_warnings(caught, command: str) -> None:
    for w in caught:
        print(f"rnnkit {command}: warning: {w.message}", file=sys.stderr)


def trainer_options(args, out):
    """This command line's trainer options; with ``--resume``, the run's saved ones with those
    written on this command line put over them."""
    if not args.resume:
        return train_config(args)
    from ...train.checkpoint import load_checkpoint

    saved = load_checkpoint(out / "last", weights_only=True).config.get("train", {})
    return resume_train_config(args, saved)


def common_options(args, out) -> dict:
    """The keyword arguments of ``train_classifier`` and ``train_tagger`` that both commands
    set from the same options: trainer, output, file format and encoding, vocabulary, vectors,
    batch size, resume, bad lines, echo."""
    return {"train_config": trainer_options(args, out), "out": out, "fmt": args.format,
            "encoding": args.encoding, "lowercase": args.lowercase,
            "min_count": args.min_count, "max_vocab": args.max_vocab, "vectors": args.vectors,
            "batch_size": args.batch_size, "resume": args.resume,
            "on_error": "skip" if args.skip_bad else "raise", "echo": echo,
            "memory_check": not args.ignore_memory_check}


def run_training(command: str, out, fit, format_test) -> int:
    """Run ``fit()``, a one-call training helper returning ``(model, vocab, summary)``; the
    warnings it raised go to stderr, one line each, then ``format_test(summary["test"])`` (with
    test data) and where the checkpoints are to stdout.  Ctrl-C stops it with exit status 130
    and says how to resume."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            _, _, summary = fit()
        except KeyboardInterrupt as e:
            print_warnings(caught, command)
            return report_interrupt(command, out, e)
    print_warnings(caught, command)
    if not (out / "best").exists():
        from ...errors import ConfigError

        raise ConfigError("--minutes: the time budget ended before the first training step, "
                          "so nothing was saved; give more minutes")
    test = summary.get("test")
    if test:
        print(format_test(test))
    print(f"checkpoint: {out / 'best'} (last: {out / 'last'})")
    return 0


def format_test(test: dict) -> str:
    """The line of test figures printed at the end."""
    return f"test accuracy: {test['accuracy']:.4f}  macro-F1: {test['macro_f1']:.4f}"


def run(args) -> int:
    from .task import train_classifier

    out = out_dir(args, "classifier")
    model_config = {**model_options(args), "pooling": args.pooling}
    echo(f"rnnkit train-classifier: {'bi' if args.bidirectional else ''}"
         f"{args.cell.upper()} {args.layers}x{args.hidden}, {args.pooling} pooling -> {out}")

    def fit():
        return train_classifier(
            args.train, args.valid, args.test, model_config=model_config,
            label_column=args.label_column, text_column=args.text_column,
            min_label_count=args.min_label_count, **common_options(args, out))

    return run_training("train-classifier", out, fit, format_test)
