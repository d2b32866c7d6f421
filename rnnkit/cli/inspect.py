"""Look inside recurrent networks: gradient flow, weight spectra, gates, clipping, activations.

Sub-commands (``rnnkit inspect ACTION --help`` for each)::

    gradients  [CHECKPOINT] --length T    ||dL/dh_t|| per step and layer; table + log-scale PNG
                                          (no checkpoint: fresh RNN/GRU/LSTM compared)
    spectrum   [CHECKPOINT]               singular values / spectral radius of every W_h block
    gates      [CHECKPOINT]               fraction of saturated gate activations
    clipping   RUN_DIR                    how often the gradient clip fired; pre-clip norms
    activations CHECKPOINT FILE --out page.html   text coloured by a unit or gate (HTML)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ..train.options import nonneg_int, path_arg, positive_int, probability


def _model_source(p, *, cells_nargs: str = "+") -> None:
    p.add_argument("checkpoint", nargs="?", default=None,
                   help="checkpoint or run directory (any model kind); omit to use fresh "
                        "layers built from --cell")
    g = p.add_argument_group("fresh layers (without a checkpoint)")
    g.add_argument("--cell", nargs=cells_nargs, default=["rnn", "gru", "lstm"],
                   choices=("rnn", "gru", "lstm"), help="cell type(s)")
    g.add_argument("--hidden", type=positive_int, default=64, help="hidden units H")
    g.add_argument("--layers", type=positive_int, default=1, help="stacked layers")
    g.add_argument("--init", choices=("default", "uniform", "pytorch", "identity"),
                   default="default", help="initialisation (see rnnkit.nn.recurrent)")
    g.add_argument("--init-scale", type=float, default=0.1)
    g.add_argument("--forget-bias", type=float, nargs="+", default=[1.0],
                   help="LSTM forget-gate bias; several values give one LSTM each")
    g.add_argument("--nonlinearity", choices=("tanh", "relu"), default="tanh", help="RNN only")
    g.add_argument("--seed", type=nonneg_int, default=0, help="seed of weights and batch")


def _debug(p) -> None:
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help="show tracebacks on errors")


def add_arguments(p) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    fmt = argparse.ArgumentDefaultsHelpFormatter

    g = sub.add_parser("gradients", formatter_class=fmt, help="gradient norm through time",
                       description="Norm of dL/dh_t (and dL/dc_t) at every step t and layer, "
                                   "L the loss at the last step (or summed).")
    _model_source(g)
    g.add_argument("--length", type=positive_int, default=100, help="sequence length T")
    g.add_argument("--batch", type=int, default=16, help="batch size B")
    g.add_argument("--vocab", type=positive_int, default=8,
                   help="fresh layers: symbols of the remember-the-first-symbol task")
    g.add_argument("--loss", choices=("last", "sum"), default="last",
                   help="loss at the last step only, or summed over the steps")
    g.add_argument("--text", type=Path, default=None,
                   help="language-model checkpoints: a text for the batch (default: every "
                        "recurrent layer probed alone on random N(0, 1) inputs)")
    g.add_argument("--every", type=positive_int, default=None, help="table: print every N-th step")
    g.add_argument("--out", type=path_arg, default=Path("gradient-flow.png"), help="PNG to write")
    _debug(g)

    s = sub.add_parser("spectrum", formatter_class=fmt, help="recurrent weight spectra",
                       description="Singular values and spectral radius of every recurrent "
                                   "weight block W_h[:, gate].")
    _model_source(s)
    s.add_argument("--top", type=positive_int, default=3, help="singular values to print per block")
    _debug(s)

    t = sub.add_parser("gates", formatter_class=fmt, help="gate saturation",
                       description="Fraction of gate activations below --low or above --high "
                                   "(tanh blocks mapped to [0, 1]) per gate and layer.")
    _model_source(t)
    t.add_argument("--text", type=Path, default=None,
                   help="a text to run the model on (default: random N(0, 1) layer inputs)")
    t.add_argument("--length", type=positive_int, default=100, help="sequence length T")
    t.add_argument("--batch", type=int, default=8, help="batch size B")
    t.add_argument("--low", type=probability, default=0.1)
    t.add_argument("--high", type=probability, default=0.9)
    _debug(t)

    c = sub.add_parser("clipping", formatter_class=fmt, help="gradient clipping report",
                       description="How often the clip fired per epoch and the distribution "
                                   "of pre-clip gradient norms, from RUN_DIR/metrics.jsonl.")
    c.add_argument("run_dir", type=Path, help="run directory (or its metrics.jsonl)")
    c.add_argument("--bins", type=positive_int, default=20, help="histogram bins (log-spaced)")
    c.add_argument("--out", type=path_arg, default=None,
                   help="histogram PNG (default: RUN_DIR/clipping.png)")
    _debug(c)

    a = sub.add_parser("activations", formatter_class=fmt, help="activation viewer (HTML)",
                       description="A self-contained HTML page showing FILE with every "
                                   "character (or word) coloured by a chosen unit or gate.")
    a.add_argument("checkpoint", help="checkpoint or run directory with a text tokenizer")
    a.add_argument("file", type=Path, help="text to show")
    a.add_argument("--out", type=path_arg, default=Path("activations.html"), help="page to write")
    a.add_argument("--max-tokens", type=positive_int, default=2000, help="show this many tokens")
    a.add_argument("--top", type=positive_int, default=5,
                   help="correlated units listed per feature")
    a.add_argument("--encoding", default="utf-8")
    _debug(a)


# -- helpers ------------------------------------------------------------------------------------


def _fresh_layers(args) -> dict:
    """``{label: layer}`` of fresh float64 layers, one per --cell (one LSTM per forget bias)."""
    from ..nn.recurrent import make_recurrent

    out = {}
    for label, cell, opts in _specs(args):
        out[label] = make_recurrent(cell, args.hidden, args.hidden, args.layers, dtype="float64",
                                    rng=np.random.default_rng(args.seed), **opts)
    return out


def _specs(args) -> list:
    specs = []
    for cell in dict.fromkeys(args.cell):
        opts = {"init": args.init, "init_scale": args.init_scale}
        if args.init == "identity" and cell != "rnn":
            opts["init"] = "default"
        if cell == "rnn":
            specs.append((cell, cell, {**opts, "nonlinearity": args.nonlinearity}))
        elif cell == "lstm":
            for fb in args.forget_bias:
                label = cell if len(args.forget_bias) == 1 else f"lstm (forget bias {fb:g})"
                specs.append((label, cell, {**opts, "forget_bias": fb}))
        else:
            specs.append((cell, cell, opts))
    return specs


def _load(path):
    """The checkpoint's model, refusing models without recurrent layers (n-gram, ...)."""
    from ..errors import DataError
    from ..inspect.models import recurrent_layers
    from ..tasks import load_model

    loaded = load_model(path)
    model = loaded.model
    if not hasattr(model, "named_modules") or not recurrent_layers(model):  # n-gram: no layers
        raise DataError(f"{loaded.checkpoint.path}: this {type(loaded.model).__name__} has no "
                        "RNN/GRU/LSTM layers to inspect")
    return loaded


def _text_rows(loaded, path: Path, B: int, T: int) -> np.ndarray:
    """Up to ``B`` consecutive windows of ``T`` tokens of the text at ``path``."""
    from ..errors import DataError
    from ..text.io import read_text

    if loaded.tokenizer is None:
        raise DataError(f"{loaded.checkpoint.path}: the checkpoint holds no text tokenizer")
    tokens = loaded.tokenizer.tokenize(read_text(path))
    ids = loaded.tokenizer.vocab.encode(tokens, warn=False)
    B = min(B, len(ids) // T)
    if B < 1:
        raise DataError(f"{path}: {len(ids)} tokens, fewer than --length {T}")
    return ids[: B * T].reshape(B, T)


# -- actions ------------------------------------------------------------------------------------


def _gradients(args) -> int:
    from ..inspect.gradflow import compare_cells, format_table, gradient_flow, model_gradient_flow
    from ..inspect.models import probe_inputs, recurrent_layers
    from ..train.plotting import plot_curves

    T = args.length
    if args.checkpoint is None:
        flows = compare_cells(_specs(args), hidden_size=args.hidden, vocab=args.vocab,
                              length=T, batch=args.batch, num_layers=args.layers,
                              seed=args.seed, loss=args.loss)
        what = (f"fresh layers, H={args.hidden}, remember-the-first-symbol task "
                f"(V={args.vocab}), readout loss")
    else:
        loaded = _load(args.checkpoint)
        if args.text is not None and loaded.loss is not None:
            rows = _text_rows(loaded, args.text, args.batch, T + 1)
            flows = model_gradient_flow(loaded.model, (rows[:, :-1], rows[:, 1:]),
                                        loaded.loss, loss=args.loss)
            flows = {f"{name} ({f.cell})": f for name, f in flows.items()}
            what = f"{loaded.kind} checkpoint, cross-entropy on {args.text.name}"
        else:
            rng = np.random.default_rng(args.seed)
            flows = {f"{name} ({layer.cell})": gradient_flow(
                layer, probe_inputs(layer, args.batch, T, rng), loss=args.loss, rng=rng,
                name=name) for name, layer in recurrent_layers(loaded.model)}
            what = f"{loaded.kind} checkpoint, layers probed on N(0, 1) inputs, L = <u, h_T>"
    loss = "the loss at the last step" if args.loss == "last" else "the summed loss"
    print(f"||dL/dh_t|| (and ||dL/dc_t||), L = {loss}; {what}")
    print(format_table(flows, args.every))
    print()
    for label, f in flows.items():
        for layer in range(f.h.shape[0]):
            tag = label + (f" layer {layer}" if f.h.shape[0] > 1 else "")
            print(f"{tag}: ||dL/dh_1|| / ||dL/dh_T|| = {f.decay(layer):.3e}")
    curves = {}
    for label, f in flows.items():
        curves.update(f.curves(label))
    path = plot_curves(curves, args.out, logy=True, xlabel="time step t",
                       ylabel="||dL/dh_t||", x=np.arange(1, T + 1),
                       title=f"Gradient flow through time: L = {loss} (T = {T})")
    print(f"plot: {path}")
    return 0


def _spectrum(args) -> int:
    from ..inspect.spectrum import format_spectrum, recurrent_spectrum

    if args.checkpoint is None:
        blocks = []
        for label, layer in _fresh_layers(args).items():
            for b in recurrent_spectrum(layer):
                b.module = label
                blocks.append(b)
    else:
        blocks = recurrent_spectrum(_load(args.checkpoint).model)
    print(format_spectrum(blocks, args.top))
    return 0


def _gates(args) -> int:
    from ..inspect.gates import format_gates, gate_saturation

    if not args.low < args.high:
        raise ValueError(f"--low {args.low} must be below --high {args.high}")
    rng = np.random.default_rng(args.seed)
    if args.checkpoint is None:
        stats = []
        for label, layer in _fresh_layers(args).items():
            for s in gate_saturation(layer, low=args.low, high=args.high, B=args.batch,
                                     T=args.length, rng=rng):
                s.module = label
                stats.append(s)
        src = "fresh layers on N(0, 1) inputs"
    else:
        loaded = _load(args.checkpoint)
        batch = None
        if args.text is not None and loaded.forward is not None:
            batch = _text_rows(loaded, args.text, args.batch, args.length)
        stats = gate_saturation(loaded.model, batch, forward=loaded.forward, low=args.low,
                                high=args.high, B=args.batch, T=args.length, rng=rng)
        src = f"{args.text.name}" if batch is not None else "N(0, 1) layer inputs"
    print(f"gate saturation (< {args.low} or > {args.high}; tanh blocks as (v + 1) / 2) "
          f"over {src}")
    print(format_gates(stats))
    return 0


def _clipping(args) -> int:
    from ..inspect.clipping import clipping_report, format_clipping, plot_clipping

    report = clipping_report(args.run_dir, bins=args.bins)
    print(format_clipping(report))
    out = args.out
    if out is None:
        base = args.run_dir if args.run_dir.is_dir() else args.run_dir.parent
        out = base / "clipping.png"
    try:
        print(f"\nplot: {plot_clipping(report, out)}")
    except ImportError:
        print("\n(no plot: matplotlib is not installed)")
    return 0


def _activations(args) -> int:
    from ..inspect.viewer import activation_page

    path = activation_page(_load(args.checkpoint), args.file, args.out,
                           max_tokens=args.max_tokens, top=args.top, encoding=args.encoding)
    print(f"page: {path}  (open it in a browser; no network needed)")
    return 0


ACTIONS = {"gradients": _gradients, "spectrum": _spectrum, "gates": _gates,
           "clipping": _clipping, "activations": _activations}


def run(args) -> int:
    return ACTIONS[args.action](args)
