"""Train an encoder-decoder (seq2seq) model on tab-separated source/target pairs.

Each line of a pairs file is ``source<TAB>target`` (further columns are ignored; a ``.zip``
holding one pairs ``.txt``, like the Tatoeba archives, works too).  Without ``--valid`` a
seeded ``--valid-fraction`` of the training pairs is held out.  After training the best
checkpoint is evaluated on the validation pairs (greedy and beam search).
"""

from __future__ import annotations

import sys

from ...train.options import (
    add_awd_arguments,
    add_train_arguments,
    fraction,
    nonneg_float,
    out_dir,
    positive_float,
    positive_int,
    report_interrupt,
    resume_train_config,
    train_config,
)


def add_arguments(p) -> None:
    d = p.add_argument_group("data")
    d.add_argument("--train", required=True, help="training pairs (TSV, or a .zip with one)")
    d.add_argument("--valid", default=None, help="validation pairs")
    d.add_argument("--valid-fraction", type=fraction, default=0.1,
                   help="without --valid: this fraction of --train is held out")
    d.add_argument("--test-fraction", type=float, default=0.0,
                   help="also hold out this fraction of --train as a test split")
    d.add_argument("--split-seed", type=int, default=0,
                   help="seed of the held-out splits (independent of --seed)")
    d.add_argument("--save-splits", default=None, metavar="DIR",
                   help="write the pairs actually used as DIR/{train,valid,test}.tsv")
    d.add_argument("--reverse", action="store_true",
                   help="the second column is the source (e.g. French -> English)")
    d.add_argument("--normalize", action="store_true",
                   help="lower-case, strip accents and non-letters (PyTorch tutorial); "
                        "also applied at translation and evaluation time")
    d.add_argument("--english-prefixes", action="store_true",
                   help="keep pairs whose English (first) column starts with 'i am', 'he is', "
                        "'i m', ... as in the PyTorch tutorial")
    d.add_argument("--max-src-len", type=int, default=None, help="drop longer sources (tokens)")
    d.add_argument("--max-tgt-len", type=int, default=None, help="drop longer targets (tokens)")
    d.add_argument("--src-level", choices=("char", "word"), default="word")
    d.add_argument("--tgt-level", choices=("char", "word"), default="word")
    d.add_argument("--min-count", type=int, default=1, help="rarer tokens become <unk>")
    d.add_argument("--max-vocab", type=int, default=None, help="largest vocabulary per side")
    d.add_argument("--encoding", default="utf-8")
    m = p.add_argument_group("model")
    m.add_argument("--cell", choices=("rnn", "gru", "lstm"), default="lstm")
    m.add_argument("--embed", type=int, default=64, help="embedding size (both sides)")
    m.add_argument("--hidden", type=int, default=128, help="encoder units per direction")
    m.add_argument("--decoder-hidden", type=int, default=None,
                   help="decoder units (default: encoder units x directions)")
    m.add_argument("--layers", type=int, default=1, help="stacked layers (encoder and decoder)")
    m.add_argument("--bidirectional", action="store_true", help="bidirectional encoder")
    m.add_argument("--bridge", choices=("auto", "concat", "linear", "zero"), default="auto",
                   help="encoder final state -> decoder initial state")
    m.add_argument("--attention", choices=("none", "dot", "general", "additive"),
                   default="general")
    m.add_argument("--attention-size", type=int, default=None, help="additive attention size")
    m.add_argument("--input-feed", action="store_true",
                   help="feed the previous attentional vector to the decoder (step by step)")
    m.add_argument("--dropout", type=float, default=0.0)
    add_awd_arguments(m)
    m.add_argument("--init", choices=("default", "uniform"), default="default")
    m.add_argument("--init-scale", type=float, default=0.1)
    m.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    s = p.add_argument_group("scheduled sampling and decoding")
    s.add_argument("--sampling", choices=("none", "linear", "exponential", "inverse-sigmoid"),
                   default="none", help="schedule of the probability of feeding the model's "
                   "own prediction (none: teacher forcing)")
    s.add_argument("--sampling-k", type=positive_float, default=None,
                   help="schedule constant k (linear: 1, exponential: 0.9999, "
                        "inverse-sigmoid: 1000)")
    s.add_argument("--sampling-c", type=float, default=1e-4, help="linear schedule slope")
    s.add_argument("--sampling-min", type=float, default=0.0,
                   help="lowest teacher-forcing probability")
    s.add_argument("--max-len", type=positive_int, default=None,
                   help="longest output when decoding (default: 2 x longest training target)")
    s.add_argument("--beam", type=positive_int, default=5,
                   help="beam width of the final evaluation")
    s.add_argument("--alpha", type=nonneg_float, default=1.0, help="beam length normalisation")
    s.add_argument("--select", choices=("loss", "exact", "bleu"), default="loss",
                   help="validation figure that picks the best checkpoint (exact match and "
                        "BLEU decode the validation pairs greedily after every epoch)")
    s.add_argument("--no-decode-valid", action="store_true",
                   help="with --select loss: validate on the loss only (no greedy decoding)")
    add_train_arguments(p, epochs=20, lr=2e-3, batch_size=64)


def _report_unknown(splits: dict, src_tok, tgt_tok) -> None:
    """One warning line per split and side that has tokens outside the vocabulary."""
    for split, pairs in splits.items():
        for side, tok, col in (("source", src_tok, 0), ("target", tgt_tok, 1)):
            stoi = tok.vocab.stoi
            tokens = [t for p in pairs for t in tok.tokenize(p[col])]
            unknown = [t for t in tokens if t not in stoi]
            if unknown:
                shown = ", ".join(repr(t) for t in dict.fromkeys(unknown[:5]))
                print(f"rnnkit train-seq2seq: warning: {split}: {len(unknown):,} of "
                      f"{len(tokens):,} {side} tokens are not in the vocabulary and became "
                      f"<unk> (first: {shown})", file=sys.stderr)


def load_splits(args) -> tuple[dict, dict]:
    """The train/valid/test pair lists (prepared and filtered) and a description of them."""
    from ...errors import DataError
    from .data import (
        ENG_PREFIXES,
        filter_pairs,
        normalize_string,
        read_pairs,
        split_pairs,
    )

    def prepare(pairs):
        if args.normalize:
            pairs = [(normalize_string(a), normalize_string(b)) for a, b in pairs]
            pairs = [(a, b) for a, b in pairs if a and b]
        if args.english_prefixes:
            pairs = filter_pairs(pairs, src_prefixes=ENG_PREFIXES)
        if args.reverse:
            pairs = [(b, a) for a, b in pairs]
        return pairs

    def split(text, level):
        return list(text) if level == "char" else text.split()

    def lengths_ok(pairs):
        return [(a, b) for a, b in pairs
                if (args.max_src_len is None or len(split(a, args.src_level)) <= args.max_src_len)
                and (args.max_tgt_len is None or len(split(b, args.tgt_level)) <= args.max_tgt_len)]

    train = lengths_ok(prepare(read_pairs(args.train, args.encoding)))
    if not train:
        raise DataError(f"{args.train}: no pairs left after filtering")
    test: list = []
    if args.valid is not None:
        valid = lengths_ok(prepare(read_pairs(args.valid, args.encoding)))
        if args.test_fraction:
            train, test = split_pairs(train, (1 - args.test_fraction, args.test_fraction),
                                      args.split_seed)
    else:
        f = (1 - args.valid_fraction - args.test_fraction, args.valid_fraction,
             args.test_fraction)
        train, valid, test = split_pairs(train, f, args.split_seed)
    info = {"train": str(args.train), "valid": str(args.valid) if args.valid else None,
            "normalize": bool(args.normalize), "reverse": bool(args.reverse),
            "pairs": {"train": len(train), "valid": len(valid), "test": len(test)}}
    return {"train": train, "valid": valid, "test": test}, info


def run(args) -> int:
    """Map the options to :func:`~rnnkit.tasks.seq2seq.train.train_seq2seq` and report."""
    from ...errors import ConfigError
    from ...train.checkpoint import load_checkpoint
    from .data import SentenceTokenizer, write_pairs
    from .model import Seq2SeqConfig
    from .task import SamplingSchedule
    from .train import train_seq2seq

    if args.beam < 1:
        raise ValueError(f"--beam must be at least 1, got {args.beam}")
    out = out_dir(args, "seq2seq")
    splits, info = load_splits(args)
    from ...distributed import world

    if args.save_splits and world().rank == 0:
        from pathlib import Path

        for name, pairs in splits.items():
            if pairs:
                write_pairs(Path(args.save_splits) / f"{name}.tsv", pairs)
    if args.resume:
        ck = load_checkpoint(out / "last", kind="seq2seq")
        src_tok, tgt_tok, cfg, schedule = ck.read(lambda: (
            SentenceTokenizer.from_dict(ck.vocab["source"]),
            SentenceTokenizer.from_dict(ck.vocab["target"]),
            Seq2SeqConfig.from_dict(ck.config["model"]),
            SamplingSchedule.from_dict(ck.config["schedule"])))
        args.batch_size, max_len = ck.read(lambda: (
            _positive(ck.config.get("batch_size", args.batch_size), "batch_size"),
            _positive(ck.config["max_len"], "max_len")))
        info = ck.config.get("data", info)
        tcfg = resume_train_config(args, ck.config.get("train", {}))
    else:
        src_tok = SentenceTokenizer(args.src_level).fit(
            [a for a, _ in splits["train"]], args.min_count, args.max_vocab)
        tgt_tok = SentenceTokenizer(args.tgt_level).fit(
            [b for _, b in splits["train"]], args.min_count, args.max_vocab)
        cfg = Seq2SeqConfig(
            src_vocab_size=len(src_tok.vocab), tgt_vocab_size=len(tgt_tok.vocab),
            cell=args.cell, embed_size=args.embed, hidden_size=args.hidden,
            decoder_hidden_size=args.decoder_hidden, num_layers=args.layers,
            bidirectional=args.bidirectional, bridge=args.bridge, attention=args.attention,
            attention_size=args.attention_size, input_feed=args.input_feed,
            dropout=args.dropout, init=args.init, init_scale=args.init_scale, dtype=args.dtype,
            dropout_embed=args.dropout_embed, weight_drop=args.weight_drop, locked=args.locked)
        if args.sampling != "none" and (args.weight_drop or args.locked):
            raise ConfigError("--weight-drop and --locked are not available with --sampling, "
                              "which decodes step by step")
        k = args.sampling_k if args.sampling_k is not None else {
            "exponential": 0.9999, "inverse-sigmoid": 1000.0}.get(args.sampling, 1.0)
        schedule = SamplingSchedule(args.sampling, k, args.sampling_c, args.sampling_min)
        longest = max(len(tgt_tok.tokenize(b)) for _, b in splits["train"])
        info["max_tgt_len"] = longest
        max_len = args.max_len or max(10, 2 * longest)
        tcfg = train_config(args)
    _report_unknown(splits, src_tok, tgt_tok)
    try:
        r = train_seq2seq(splits, out, model=cfg, src_tok=src_tok, tgt_tok=tgt_tok, train=tcfg,
                          schedule=schedule, max_len=max_len, batch_size=args.batch_size,
                          alpha=args.alpha, select=args.select,
                          decode_valid=not args.no_decode_valid, data_info=info,
                          resume=args.resume, beams=(1, args.beam),
                          memory_check=not args.ignore_memory_check,
                          echo=lambda s: print(s, file=sys.stderr),
                          announce=lambda s: print(f"rnnkit train-seq2seq: {s}",
                                                   file=sys.stderr))
    except KeyboardInterrupt as e:
        return report_interrupt("train-seq2seq", out, e)
    for split, by_beam in r.figures.items():
        for beam, f in by_beam.items():
            bleu = f", BLEU {f['bleu']:.2f}" if "bleu" in f else ""
            print(f"{split} ({'greedy' if beam == 1 else f'beam {beam}'}): exact match "
                  f"{f['exact']:.4f}, token accuracy {f['token_acc']:.4f}{bleu}",
                  file=sys.stderr)
    print(f"checkpoint: {out / 'best'} (last: {out / 'last'})")
    return 0


def _positive(value, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value
