"""Train a character- or word-level RNN/GRU/LSTM language model.

With no arguments: a 2-layer character LSTM on the Python standard library's own source
files (present wherever Python runs), for about three minutes, then a sample.
"""

from __future__ import annotations

import sys
import warnings

import numpy as np

from .common import add_train_arguments, out_dir, train_config


def add_arguments(p) -> None:
    d = p.add_argument_group("data")
    d.add_argument("--data", default=None,
                   help="a text file, .gz file, directory, or a registry name (ptb, "
                        "tinyshakespeare, wikitext-2); default: the built-in corpus")
    d.add_argument("--level", choices=("char", "word"), default=None,
                   help="tokenizer (default: the data set's own, else char)")
    d.add_argument("--encoding", default="utf-8", help="text encoding of the files")
    d.add_argument("--valid-fraction", type=float, default=0.1,
                   help="for a single file: the last fraction of characters used for validation")
    d.add_argument("--min-count", type=int, default=1, help="words seen fewer times -> <unk>")
    d.add_argument("--max-vocab", type=int, default=None, help="largest vocabulary size")
    m = p.add_argument_group("model")
    m.add_argument("--cell", choices=("rnn", "gru", "lstm"), default="lstm")
    m.add_argument("--embed", type=int, default=64, help="embedding size")
    m.add_argument("--hidden", type=int, default=256, help="hidden units per layer")
    m.add_argument("--layers", type=int, default=2, help="stacked recurrent layers")
    m.add_argument("--dropout", type=float, default=0.0, help="dropout between layers")
    m.add_argument("--tie-weights", action="store_true", help="share embedding and output")
    m.add_argument("--init", choices=("default", "uniform"), default="default",
                   help="default: Xavier/orthogonal; uniform: U(-a, a) with --init-scale")
    m.add_argument("--init-scale", type=float, default=0.1)
    m.add_argument("--nonlinearity", choices=("tanh", "relu"), default="tanh",
                   help="for --cell rnn")
    m.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    m.add_argument("--bptt", type=int, default=64, help="window length T (truncated BPTT)")
    m.add_argument("--eval-batch-size", type=int, default=32,
                   help="parallel streams when measuring validation/test perplexity")
    m.add_argument("--sample-length", type=int, default=300,
                   help="tokens to sample at the end (0: none)")
    add_train_arguments(p, epochs=1000, minutes=None, lr=2e-3, batch_size=32)


def load_data(args):
    from ..text.datasets import DATASETS, load_corpus
    from ..text.io import default_corpus, split_fraction

    if args.data is None:
        texts = split_fraction(default_corpus(), 1 - args.valid_fraction, args.valid_fraction,
                               at_lines=True)
        level = args.level or "char"
        info = {"source": "builtin:python-stdlib"}
    else:
        texts = load_corpus(args.data, args.encoding,
                            fractions=(1 - args.valid_fraction, args.valid_fraction, 0.0))
        known = DATASETS.get(args.data)
        level = args.level or (known.level if known is not None else "char")
        info = {"source": str(args.data)}
    info["level"] = level
    return texts, level, info


def run(args) -> int:
    from ..checkpoint import load_checkpoint
    from ..models.lm import LanguageModel, LMConfig
    from ..text.tokenizers import make_tokenizer, tokenizer_from_dict
    from ..train.lm_task import LMTask
    from ..train.trainer import Trainer

    out = out_dir(args, "lm")
    minutes = args.minutes
    if args.data is None and args.minutes is None and not args.resume:
        minutes = 3.0  # the main job: about three minutes on the built-in corpus
    args.minutes = minutes
    texts, level, info = load_data(args)
    if args.resume:
        ck = load_checkpoint(out / "last", kind="lm")
        tokenizer = tokenizer_from_dict(ck.vocab)
        cfg = LMConfig.from_dict(ck.config["model"])
        args.batch_size = ck.config.get("batch_size", args.batch_size)
        args.bptt = ck.config.get("bptt", args.bptt)
    else:
        tokenizer = make_tokenizer(level).fit(texts["train"], min_count=args.min_count,
                                              max_size=args.max_vocab)
        cfg = LMConfig(vocab_size=len(tokenizer.vocab), cell=args.cell, embed_size=args.embed,
                       hidden_size=args.hidden, num_layers=args.layers, dropout=args.dropout,
                       tie_weights=args.tie_weights, init=args.init,
                       init_scale=args.init_scale, nonlinearity=args.nonlinearity,
                       dtype=args.dtype)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ids = {k: (tokenizer.encode(v) if v else None) for k, v in texts.items()}
    for w in caught:
        print(f"rnnkit train: warning: {w.message}", file=sys.stderr)
    model = LanguageModel(cfg, rng=np.random.default_rng(args.seed))
    task = LMTask(model, tokenizer, ids["train"], ids.get("valid"), ids.get("test"),
                  batch_size=args.batch_size, bptt=args.bptt,
                  eval_batch_size=args.eval_batch_size, data_info=info)
    tcfg = train_config(args)
    print(f"rnnkit train: {level}-level {cfg.cell.upper()} {cfg.num_layers}x{cfg.hidden_size}, "
          f"vocab {cfg.vocab_size}, {model.num_parameters():,} parameters, "
          f"{len(ids['train']):,} training tokens -> {out}", file=sys.stderr)
    trainer = Trainer(task, tcfg, out, resume=args.resume,
                      echo=lambda s: print(s, file=sys.stderr))
    try:
        summary = trainer.fit()
    except KeyboardInterrupt:
        print(f"rnnkit train: interrupted; checkpoint saved in {out / 'last'}; continue with "
              f"--out {out} --resume", file=sys.stderr)
        return 130
    if ids.get("test") is not None:
        from ..models.lm import load_lm
        from ..train.lm_task import evaluate_lm

        best, _, _ = load_lm(out / "best")
        r = evaluate_lm(best, ids["test"], args.eval_batch_size, args.bptt)
        print(f"test perplexity: {r['ppl']:.2f}", file=sys.stderr)
    print(f"checkpoint: {out / 'best'} (last: {out / 'last'})")
    if args.sample_length > 0:
        from .sample import sample_text

        print("sample:")
        sample_text(out / "best", prime="", length=args.sample_length, temperature=0.8,
                    seed=args.seed, stream=sys.stdout)
        print()
    return 0
