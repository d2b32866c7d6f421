"""Translate sentences with a seq2seq checkpoint (greedy, sampling or beam search).

TEXT is one source sentence; ``-`` or nothing reads one sentence per line from standard input
and prints one output per line.  The text is prepared as in training (``--normalize`` runs
normalise it).  Source tokens outside the vocabulary become ``<unk>`` with a warning.  An output
that reaches ``--max-len`` tokens without ``<eos>`` stops there (marked with a warning).
"""

from __future__ import annotations

import sys
import warnings

from ...train.options import nonneg_float, nonneg_int, positive_int


def add_arguments(p) -> None:
    p.add_argument("checkpoint", help="checkpoint directory or run directory")
    p.add_argument("text", nargs="?", default="-",
                   help="the sentence to translate; '-' reads lines from standard input")
    p.add_argument("--beam", type=int, default=5, help="beam width (1: greedy)")
    p.add_argument("--alpha", type=nonneg_float, default=None,
                   help="length normalisation: rank by logp / length^alpha (default: the "
                        "run's, usually 1.0; 0 disables)")
    p.add_argument("--max-len", type=positive_int, default=None,
                   help="longest output in tokens (default: the run's)")
    p.add_argument("--temperature", type=float, default=0.0,
                   help="with --beam 1: sample at this temperature instead of greedy")
    p.add_argument("--seed", type=nonneg_int, default=0, help="seed for sampling")
    p.add_argument("--n-best", type=int, default=1,
                   help="print this many beam hypotheses with their log probabilities")
    p.add_argument("--attention-plot", default=None, metavar="FILE.png",
                   help="draw the attention weights of the (single) sentence as a heatmap")


def _stdin_lines() -> list[tuple[int, str]]:
    """Every line of standard input, blank ones included; binary or undecodable input is a
    :class:`DataError` naming the line."""
    from ...errors import DataError
    from ...text.io import iter_lines

    lines = []
    for n, line in iter_lines("-"):
        if "\x00" in line:
            raise DataError(f"<stdin>:{n}: binary data (a NUL byte); expected UTF-8 text")
        lines.append((n, line))
    return lines


def plot_attention(weights, src_tokens, out_tokens, path, title: str | None = None):
    """Heatmap of attention weights (n_out, n_src): rows the output tokens, columns the
    source tokens.  matplotlib is imported here only."""

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n_out, n_src = weights.shape
    fig = Figure(figsize=(1.2 + 0.45 * n_src, 1.0 + 0.4 * n_out))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(weights, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(n_src))
    ax.set_xticklabels(src_tokens, rotation=60, ha="right")
    ax.set_yticks(range(n_out))
    ax.set_yticklabels(out_tokens)
    ax.set_xlabel("source")
    ax.set_ylabel("output")
    if title:
        ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    from ...train.plotting import png_path

    path = png_path(path, "attention.png")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def run(args) -> int:
    from .inference import load_seq2seq, output_limit, text_preparation, translate_texts

    if args.beam < 1:
        raise ValueError(f"--beam must be at least 1, got {args.beam}")
    if args.n_best < 1 or args.n_best > args.beam:
        raise ValueError(f"--n-best must be in 1..--beam ({args.beam}), got {args.n_best}")
    if args.temperature < 0:
        raise ValueError(f"--temperature must be >= 0, got {args.temperature}")
    model, src_tok, tgt_tok, ck = load_seq2seq(args.checkpoint)
    prepare = text_preparation(ck)
    lines = _stdin_lines() if args.text == "-" else [(0, args.text)]  # (line number, text)
    numbers = [n for n, _ in lines]
    texts = [prepare(t) if t.strip() else "" for _, t in lines]
    if not any(texts) or (args.text != "-" and not all(texts)):
        raise ValueError("nothing to translate: the input is empty" + (
            " after normalisation" if prepare is not str.strip else ""))
    if args.attention_plot and len(texts) != 1:
        raise ValueError(f"--attention-plot draws one sentence; got {len(texts)} lines")
    if args.attention_plot and model.attention is None:
        raise ValueError("--attention-plot: this model has no attention")
    max_len = output_limit(ck, args.max_len)
    alpha = ck.config.get("alpha", 1.0) if args.alpha is None else args.alpha
    for n, text in zip(numbers, texts):
        if not text:  # a blank line gives a blank line: outputs stay aligned with inputs
            print("")
            continue
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if args.n_best > 1:
                ids = src_tok.encode(text)
                hyps = model.beam_search(ids, beam=args.beam, max_len=max_len, alpha=alpha)
            else:
                result = translate_texts(model, src_tok, tgt_tok, [text], beam=args.beam,
                                         max_len=max_len, alpha=alpha,
                                         temperature=args.temperature, rng=args.seed)[0]
        where = f"line {n}: " if n else ""
        for w in caught:
            print(f"rnnkit translate: warning: {where}{w.message}", file=sys.stderr)
        if args.n_best > 1:
            for h in hyps[: args.n_best]:
                print(f"{h.logp:.4f}\t{tgt_tok.decode(h.tokens)}")
            continue
        if not result.finished:
            print(f"rnnkit translate: warning: {where}no <eos> within {max_len} tokens; "
                  "output cut at --max-len", file=sys.stderr)
        print(result.text)
        if args.attention_plot:
            rows = result.tgt_tokens + (["<eos>"] if result.finished else [])
            path = plot_attention(result.weights, result.src_tokens, rows, args.attention_plot,
                                  title=f"{text} -> {result.text}")
            print(f"attention plot: {path}", file=sys.stderr)
    return 0
