"""``rnnkit COMMAND ...``: dispatch to one module per command.

Errors are one line on stderr and a non-zero exit status; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys

COMMANDS = {
    "train": ("rnnkit.cli.train", "train a language model (default: a character LSTM on the "
              "Python standard library's source)"),
    "eval": ("rnnkit.cli.evaluate", "evaluate a checkpoint on a file"),
    "sample": ("rnnkit.cli.sample", "generate text from a language-model checkpoint"),
}


def _optional(name: str, module: str, help_: str) -> None:
    try:
        importlib.util.find_spec(module)
    except ModuleNotFoundError:
        return
    if importlib.util.find_spec(module) is not None:
        COMMANDS[name] = (module, help_)


for _name, _mod, _help in [
    ("train-classifier", "rnnkit.cli.train_classifier", "train a sequence classifier"),
    ("train-tagger", "rnnkit.cli.train_tagger", "train a sequence tagger"),
    ("predict", "rnnkit.cli.predict", "labels or tags from a classifier/tagger checkpoint"),
    ("train-seq2seq", "rnnkit.cli.train_seq2seq", "train an encoder-decoder model"),
    ("translate", "rnnkit.cli.translate", "translate with a seq2seq checkpoint"),
    ("inspect", "rnnkit.cli.inspect", "look inside a model: gradients, spectra, gates"),
]:
    _optional(_name, _mod, _help)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rnnkit", description="Recurrent networks (RNN, GRU, LSTM) in NumPy.")
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"rnnkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_) in COMMANDS.items():
        mod = importlib.import_module(module)
        p = sub.add_parser(name, help=help_, description=mod.__doc__.strip().splitlines()[0],
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        mod.add_arguments(p)
        p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
        p.set_defaults(run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv:  # bare `rnnkit`: show the commands
        build_parser().print_help()
        return 0
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("rnnkit: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # one clear line unless --debug
        if getattr(args, "debug", False):
            raise
        from ..errors import RnnkitError

        kind = "" if isinstance(e, (RnnkitError, OSError, ValueError)) else \
            f"{type(e).__name__}: "
        print(f"rnnkit {args.command}: error: {kind}{e}", file=sys.stderr)
        return 2 if isinstance(e, (RnnkitError, ValueError)) else 1


if __name__ == "__main__":
    sys.exit(main())
