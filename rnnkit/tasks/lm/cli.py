"""Train a character- or word-level RNN/GRU/LSTM language model.

With no arguments: a 2-layer character LSTM on the Python standard library's own source
files (present wherever Python runs), for about three minutes in all, then a sample.
``--resume`` continues the run in ``--out`` with its saved data, vocabulary, model and options.
"""

from __future__ import annotations

import sys
import time

from ...train.options import (
    add_awd_arguments,
    add_train_arguments,
    fraction,
    nonneg_int,
    out_dir,
    positive_int,
    report_interrupt,
    resume_train_config,
    train_config,
)
from .data import BUILTIN, BUILTIN_VALID, check_fingerprint, load_texts

BUILTIN_MINUTES = 3.0
MODEL_OPTIONS = ("level", "min_count", "max_vocab", "cell", "embed", "hidden", "layers",
                 "dropout", "tie_weights", "init", "init_scale", "nonlinearity", "dtype", "proj",
                 "layer_norm", "adaptive_softmax",
                 "dropout_input", "dropout_output", "dropout_embed", "weight_drop", "locked",
                 "ar", "tar")
AWD_OPTIONS = MODEL_OPTIONS[-7:]
REASONS = {"epochs": "all epochs done", "time": "time budget used", "steps": "--max-steps reached",
           "early-stopping": "early stopping"}


def add_arguments(p) -> None:
    d = p.add_argument_group("data")
    d.add_argument("--data", default=None,
                   help="a text file, .gz file, directory, or a registry name (ptb, "
                        "tinyshakespeare, wikitext-2) (default: the built-in corpus, Python "
                        "standard-library source)")
    d.add_argument("--level", choices=("char", "word"), default=None,
                   help="tokenizer (default: the data set's own, else char)")
    d.add_argument("--encoding", default="utf-8", help="text encoding of the files")
    d.add_argument("--valid-fraction", type=fraction, default=None,
                   help="for a single file: the last fraction of characters used for "
                        f"validation (default: 0.1; {BUILTIN_VALID} for the built-in corpus)")
    d.add_argument("--accept-changed-data", action="store_true",
                   help="with --resume: continue although the data differs from the data the "
                        "run started on (default: refuse)")
    d.add_argument("--min-count", type=int, default=1, help="words seen fewer times -> <unk>")
    d.add_argument("--max-vocab", type=int, default=None,
                   help="largest vocabulary size (default: no limit)")
    m = p.add_argument_group("model")
    m.add_argument("--model", choices=("rnn", "ngram"), default="rnn",
                   help="rnn: a recurrent network (--cell); ngram: a counted n-gram model "
                        "(--order, --smoothing)")
    m.add_argument("--cell", choices=("rnn", "gru", "lstm", "mingru", "minlstm",
                                      "output-recurrent"),
                   default="lstm",
                   help="recurrent cell; mingru/minlstm: gates from x_t alone, a whole window "
                        "in one parallel scan (Feng et al. 2024); output-recurrent feeds the "
                        "previous target/output back instead of the hidden state")
    m.add_argument("--embed", type=int, default=64, help="embedding size")
    m.add_argument("--hidden", type=int, default=256, help="hidden units per layer")
    m.add_argument("--layers", type=int, default=2, help="stacked recurrent layers")
    m.add_argument("--dropout", type=float, default=0.0,
                   help="dropout between layers, and by default on the embedding output and "
                        "the last layer's output")
    add_regularisation_arguments(p)
    m.add_argument("--tie-weights", action="store_true",
                   help="share embedding and output weights (needs --embed == --hidden, or "
                        "--embed == --proj)")
    m.add_argument("--proj", type=int, default=0, metavar="N",
                   help="projection LSTM (LSTMP): each layer outputs and feeds back "
                        "h = W_hr (o * tanh(c)) of N < --hidden units (0: none)")
    m.add_argument("--layer-norm", action="store_true",
                   help="LayerNorm LSTM/GRU (Ba et al. 2016): the input and recurrent "
                        "pre-activations normalised separately, and the LSTM cell state")
    m.add_argument("--adaptive-softmax", type=_cutoffs, default=None, metavar="C1,C2,...",
                   help="adaptive softmax output layer (Grave et al. 2017) with these "
                        "frequency cut-offs: a head of the C1 most frequent tokens plus one "
                        "entry per tail cluster (default: the full softmax)")
    m.add_argument("--init", choices=("default", "uniform", "identity"), default="default",
                   help="Xavier/orthogonal weights; U(-a, a) with a = --init-scale; or, for "
                        "--cell rnn (with --nonlinearity relu: IRNN), W_h = --init-scale x I")
    m.add_argument("--init-scale", type=float, default=None,
                   help="a for --init uniform; the scale of I for --init identity "
                        "(default: 0.1 for uniform, 1.0 for identity)")
    m.add_argument("--nonlinearity", choices=("tanh", "relu"), default="tanh",
                   help="for --cell rnn")
    m.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                   help="floating-point type of weights and activations")
    m.add_argument("--bptt", type=positive_int, default=64, help="window length T (truncated BPTT)")
    m.add_argument("--eval-batch-size", type=positive_int, default=32,
                   help="parallel streams when measuring validation/test perplexity")
    m.add_argument("--sample-length", type=nonneg_int, default=300,
                   help="tokens to sample at the end (0: none)")
    from ..ngram.cli import add_ngram_arguments

    add_ngram_arguments(p)
    add_output_recurrent_arguments(p)
    add_train_arguments(
        p, epochs=None, minutes=None, lr=2e-3, batch_size=32,
        epochs_help="maximum number of epochs (default: no limit with --minutes, else 10)",
        minutes_help="time budget in minutes, validation and the final sample included "
                     f"(default: {BUILTIN_MINUTES:g} for the built-in corpus, else no limit)")


def add_regularisation_arguments(p) -> None:
    """The AWD-LSTM regularisers of ``rnnkit train`` (an argument group)."""
    a = p.add_argument_group("AWD-LSTM regularisation (Merity et al. 2018; default: off)")
    a.add_argument("--dropout-input", type=float, default=None, metavar="P",
                   help="dropout on the embedding output (default: --dropout)")
    a.add_argument("--dropout-output", type=float, default=None, metavar="P",
                   help="dropout on the last layer's output (default: --dropout)")
    add_awd_arguments(a, unit="window")
    a.add_argument("--ar", type=float, default=0.0, metavar="A",
                   help="activation regularisation: add A * mean(h^2) of the last layer's "
                        "dropped output to the training loss")
    a.add_argument("--tar", type=float, default=0.0, metavar="B",
                   help="temporal activation regularisation: add B * mean((h_t+1 - h_t)^2) "
                        "of the last layer's output to the training loss")
    a.add_argument("--bptt-jitter", action="store_true",
                   help="AWD-LSTM's random window length: --bptt with probability 0.95, else "
                        "--bptt / 2, then N(that, 5), at least 5 tokens; the learning rate "
                        "is scaled by length / --bptt")


def load_data(args):
    """``(texts, level, info)`` from the data options (see :func:`.data.load_texts`)."""
    return load_texts(args.data, level=args.level, encoding=args.encoding,
                      valid_fraction=args.valid_fraction)


def _restore_run_options(args, ck) -> None:
    """``--resume``: take the data and batching options from the run, warn about model
    options, which cannot change."""
    given = getattr(args, "given", None)
    data = ck.config["data"]
    if given is not None and "data" not in given:
        source = data["source"]
        if not isinstance(source, str):
            raise TypeError(f"data source must be a string, got {source!r}")
        args.data = None if source == BUILTIN else source
    for key in ("encoding", "valid_fraction"):
        if key in data and (given is None or key not in given):
            setattr(args, key, data[key])
    # the data position depends on these; the validation figures (the best checkpoint,
    # NT-ASGD's checks) on the evaluation streams
    for key in ("batch_size", "bptt", "bptt_jitter", "eval_batch_size"):
        saved = ck.config.get(key, False if key == "bptt_jitter" else getattr(args, key))
        if given and key in given and getattr(args, key) != saved:
            _warn(f"--{key.replace('_', '-')} {getattr(args, key)} ignored: the run uses {saved}")
        setattr(args, key, saved)
    for key in sorted(set(given or ()) & set(MODEL_OPTIONS)):
        _warn(f"--{key.replace('_', '-')} ignored with --resume: the run keeps its model and "
              "vocabulary")


def _cutoffs(text: str) -> list[int]:
    """``"2000,10000"`` -> ``[2000, 10000]`` (argparse turns the ValueError into one line)."""
    try:
        cut = [int(c) for c in text.split(",")]
    except ValueError:
        raise ValueError(f"expected increasing integers separated by commas, got {text!r}") \
            from None
    if any(c < 1 for c in cut) or any(b <= a for a, b in zip(cut, cut[1:])):
        raise ValueError(f"expected increasing positive integers, got {text!r}")
    return cut


_cutoffs.__name__ = "cut-offs"  # argparse names the type in its message


def _check_model_options(args) -> None:
    """One-line errors naming the option, before any data is read."""
    from ...errors import ConfigError

    if args.proj < 0:
        raise ConfigError(f"--proj must be >= 0, got {args.proj}")
    if args.proj and (args.cell != "lstm" or args.proj >= args.hidden):
        raise ConfigError(f"--proj is for --cell lstm and must be below --hidden ({args.hidden}), "
                          f"got --proj {args.proj} with --cell {args.cell}")
    if args.adaptive_softmax and args.tie_weights:
        raise ConfigError("--adaptive-softmax and --tie-weights exclude each other")
    if args.layer_norm and (args.cell not in ("lstm", "gru") or args.proj):
        raise ConfigError(f"--layer-norm is for --cell lstm or gru without --proj, got --cell "
                          f"{args.cell}" + (f" --proj {args.proj}" if args.proj else ""))


def _warn(message: str) -> None:
    print(f"rnnkit train: warning: {message}", file=sys.stderr)


def run(args) -> int:
    """Map the options to :func:`~rnnkit.tasks.lm.train.train_lm` and report."""
    from ...errors import CheckpointError, ConfigError
    from ...text.tokenizers import tokenizer_from_dict
    from ...train.checkpoint import load_checkpoint
    from ...train.trainer import fmt_figure
    from .train import fit_tokenizer, train_lm

    if getattr(args, "model", "rnn") == "ngram":
        from ..ngram.cli import train_ngram_cli

        return train_ngram_cli(args, load_data(args))
    if args.init_scale is None:  # the default depends on the kind of initialisation
        args.init_scale = 1.0 if args.init == "identity" else 0.1
    if args.init == "identity" and args.cell != "rnn":
        raise ConfigError("--init identity is for --cell rnn only (IRNN: add --nonlinearity relu)")
    _check_model_options(args)
    t0 = time.monotonic()
    out = out_dir(args, "lm")
    ck = None
    if args.resume:
        ck = load_checkpoint(out / "last", kind="lm")
        if ck.train_meta is None:
            raise CheckpointError(f"{ck.path}: holds weights but no training state, so the run "
                                  "cannot be resumed; start a new run (another --out) instead")
        ck.read(lambda: _restore_run_options(args, ck))
    elif args.data is None and args.minutes is None and args.max_steps is None:
        args.minutes = BUILTIN_MINUTES  # the main job: about three minutes in all
    if args.epochs is None:
        args.epochs = 10 if args.minutes is None and args.max_steps is None else 10**6
    texts, level, info = load_data(args)
    if ck is not None:
        # --data on the resuming command line is as explicit as --accept-changed-data
        chosen = args.accept_changed_data or "data" in (getattr(args, "given", None) or ())
        check_fingerprint(ck.config["data"].get("fingerprint"), texts, info["source"],
                          chosen, _warn)
    if ck is not None:
        tokenizer, model = ck.read(lambda: (tokenizer_from_dict(ck.vocab),
                                            _model_config(ck.config["model"], None)))
        ss_prob, feedback = ck.read(lambda: (float(ck.config.get("ss_prob", 0.0)),
                                             str(ck.config.get("feedback", "sample"))))
        tcfg = resume_train_config(args, ck.config.get("train", {}))
    else:
        tokenizer = fit_tokenizer(level, texts, min_count=args.min_count,
                                  max_vocab=args.max_vocab)
        model = _model_config(None, args, len(tokenizer.vocab))
        ss_prob = getattr(args, "ss_prob", 0.0)
        feedback = getattr(args, "feedback", "sample")
        tcfg = train_config(args)
    # a time budget covers everything: setup so far, training, validation, the plot and the
    # final sample
    reserve = 0.0
    if tcfg.minutes is not None:
        reserve = time.monotonic() - t0 + 2.5 + 0.002 * max(args.sample_length, 0)
    try:
        r = train_lm(texts, out, model=model, tokenizer=tokenizer, train=tcfg,
                     batch_size=args.batch_size, bptt=args.bptt,
                     eval_batch_size=args.eval_batch_size, bptt_jitter=args.bptt_jitter,
                     ss_prob=ss_prob, feedback=feedback,
                     data_info=info, resume=args.resume, reserve_s=reserve,
                     echo=lambda s: print(s, file=sys.stderr),
                     announce=lambda s: print(f"rnnkit train: {s}", file=sys.stderr),
                     warn=_warn, memory_check=not args.ignore_memory_check)
    except KeyboardInterrupt as e:
        return report_interrupt("train", out, e,
                                f"continue with: rnnkit train --out {out} --resume")
    summary = r.summary
    _check_saved(out, tcfg)
    if args.resume and r.steps == 0:
        _warn(f"the run had already stopped ({REASONS.get(summary['reason'], summary['reason'])}"
              "); raise --epochs, --minutes or --max-steps to train further")
    print(_summary_line(summary, out))
    if r.test is not None:
        print(f"test perplexity: {fmt_figure(r.test['ppl'], 2)}")
    if args.sample_length > 0:
        from .inference import sample_text

        print("sample:")
        sample_text(out / "best", prime="", length=args.sample_length, temperature=0.8,
                    seed=tcfg.seed, stream=sys.stdout)
        print()
    return 0


def _check_saved(out, tcfg) -> None:
    """A time budget too short for one step saves nothing: say so instead of naming best/."""
    from ...errors import ConfigError

    if not (out / "best").exists():
        raise ConfigError(f"--minutes {tcfg.minutes:g}: the time budget ended before the first "
                          "training step, so nothing was saved; give more minutes")


def _model_config(saved: dict | None, args, vocab_size: int = 1):
    """The model configuration: a resumed run's (``saved``), else from the options."""
    from .inference import OUTPUT_RECURRENT
    from .model import LMConfig
    from .output_recurrent import ORConfig

    if saved is not None:
        cls = ORConfig if saved.get("cell") == OUTPUT_RECURRENT else LMConfig
        return cls.from_dict(saved)
    if args.cell == OUTPUT_RECURRENT:
        from ...errors import ConfigError

        for key in AWD_OPTIONS:
            if getattr(args, key, None):
                raise ConfigError(f"--{key.replace('_', '-')} is not available with --cell "
                                  f"{OUTPUT_RECURRENT}")
        return ORConfig(vocab_size=vocab_size, hidden_size=args.hidden,
                        nonlinearity=args.nonlinearity, dropout=args.dropout,
                        init_scale=args.init_scale, dtype=args.dtype)
    from ...errors import ConfigError

    try:
        return _lm_config(args, vocab_size)
    except ConfigError as e:
        if args.adaptive_softmax and "cutoffs" in str(e):  # known only now: the vocabulary
            raise ConfigError(f"--adaptive-softmax: {e}") from None
        raise


def _lm_config(args, vocab_size: int):
    from .model import LMConfig

    return LMConfig(vocab_size=vocab_size, cell=args.cell, embed_size=args.embed,
                    hidden_size=args.hidden, num_layers=args.layers, dropout=args.dropout,
                    tie_weights=args.tie_weights, init=args.init, init_scale=args.init_scale,
                    nonlinearity=args.nonlinearity, dtype=args.dtype, proj_size=args.proj,
                    layer_norm=args.layer_norm, adaptive_softmax=args.adaptive_softmax,
                    **{k: getattr(args, k) for k in AWD_OPTIONS})


def _summary_line(summary: dict, out) -> str:
    """``best valid loss 1.2345 | ppl 3.44 | 1.781 bits/char | 3m00s, 812 steps (time budget
    used) | checkpoint runs/lm-.../best``"""
    from ...train.trainer import fmt_figure

    figures = summary.get("best_figures") or {}
    parts = []
    if "loss" in figures:
        parts += [f"best valid loss {fmt_figure(figures['loss'])}",
                  f"ppl {fmt_figure(figures['ppl'], 2)}"]
        if "bpc" in figures:
            parts.append(f"{fmt_figure(figures['bpc'], 3)} bits/char")
    else:
        parts.append("no validation text")
    m, s = divmod(round(summary["time"]), 60)
    reason = REASONS.get(summary["reason"], summary["reason"])
    parts.append(f"{m}m{s:02d}s, {summary['step']} steps ({reason})")
    parts.append(f"checkpoint {out / 'best'}")
    return " | ".join(parts)


def add_output_recurrent_arguments(p) -> None:
    """The options of ``rnnkit train --cell output-recurrent`` (an argument group)."""
    g = p.add_argument_group("output-recurrent model (--cell output-recurrent)")
    g.add_argument("--ss-prob", type=float, default=0.0,
                   help="scheduled sampling: probability of feeding back the model's own "
                        "prediction instead of the previous target (0: teacher forcing)")
    g.add_argument("--feedback", choices=("sample", "argmax"), default="sample",
                   help="how the model's own prediction is chosen when fed back")
