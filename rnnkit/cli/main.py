"""``rnnkit COMMAND ...``: dispatch to one module per command (the task commands come from
:data:`rnnkit.tasks.REGISTRY`).

Errors are one line on stderr and a non-zero exit status; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# the commands every kind shares; each task adds its own through rnnkit.tasks.REGISTRY
GENERIC = {
    "eval": ("rnnkit.cli.evaluate", "evaluate a checkpoint on a file"),
    "predict": ("rnnkit.cli.predict", "labels or tags from a classifier/tagger checkpoint"),
    "inspect": ("rnnkit.cli.inspect", "look inside a model: gradients, spectra, gates"),
    "serve": ("rnnkit.cli.serve", "serve a checkpoint over HTTP: a JSON API and a page"),
    "export": ("rnnkit.cli.export", "export a checkpoint to ONNX graphs"),
    "quantize": ("rnnkit.cli.quantize", "int8 weights: a smaller checkpoint every command loads"),
}


def commands() -> dict[str, tuple[str, str]]:
    """``{command: (module, help)}``: the task commands from the registry, then the shared
    ones."""
    from ..tasks import REGISTRY

    out = {}
    for spec in REGISTRY.values():
        for c in spec.commands:
            out[c.name] = (f"rnnkit.tasks.{c.module}", c.help)
    out.update(GENERIC)
    return out


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows every option's default, unless its help already says ``(default: ...)``."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "(default" in text or action.default is argparse.SUPPRESS:
            return text
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """Usage errors are one line too: ``rnnkit train: error: ... (see --help)``."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="rnnkit", description="Recurrent networks (RNN, GRU, LSTM) in NumPy.")
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"rnnkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_) in commands().items():
        mod = importlib.import_module(module)
        p = sub.add_parser(name, help=help_, description=mod.__doc__.strip().splitlines()[0],
                           formatter_class=_HelpFormatter)
        mod.add_arguments(p)
        p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
        p.set_defaults(run=mod.run)
    parser.commands = sub.choices  # name -> sub-parser
    return parser


def given_options(sub: argparse.ArgumentParser, argv: list[str], args) -> set[str]:
    """The ``dest`` names the user wrote on the command line (not left at their defaults):
    ``argv`` is parsed again into a namespace pre-filled with a marker, which argparse leaves
    alone for every option that is not given."""
    unset = object()
    dests = [k for k in vars(args) if k not in ("run", "command")]
    ns = argparse.Namespace(**{k: unset for k in dests})
    sub.parse_known_args(argv, namespace=ns)
    return {k for k in dests if getattr(ns, k) is not unset}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    if not argv:  # bare `rnnkit`: show the commands
        parser.print_help()
        return 0
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    args.given = given_options(parser.commands[args.command], argv[argv.index(args.command) + 1:],
                               args)
    world = _world(args.command)
    if world is None:
        return 2
    rc = _run(args)
    if rc not in (0, 130, 143):  # an error on one rank ends every rank, rather than a wait
        world.abort(rc)
    return rc


def _world(command: str):
    """This process's :class:`~rnnkit.distributed.World`; under an MPI launcher the ranks other
    than 0 keep quiet on stdout (rank 0 reports), and write only errors to stderr.  ``None``
    (after a one-line error) when the launcher's processes cannot form a world."""
    from .. import distributed
    from ..errors import RnnkitError

    try:
        world = distributed.world()
    except RnnkitError as e:
        print(f"rnnkit {command}: error: {e}", file=sys.stderr)
        return None
    if world.rank != 0:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 -- for the life of the process
        sys.stderr = _ErrorsOnly(sys.stderr)
    return world


class _ErrorsOnly:
    """A stderr that lets through only the lines that carry an error or a traceback."""

    def __init__(self, stream):
        self.stream, self.pending, self.passing = stream, "", False

    def write(self, text: str) -> int:
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            self.passing = self.passing or "Traceback" in line or "error" in line.lower()
            if self.passing:
                self.stream.write(line + "\n")
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return False

    def __getattr__(self, name):  # fileno, encoding, ...: the real stream's
        return getattr(self.stream, name)


def _run(args) -> int:
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt as e:  # the training commands report what they saved
        print(f"rnnkit {args.command}: interrupted", file=sys.stderr)
        return getattr(e, "status", 130)
    except Exception as e:  # one clear line unless --debug
        if getattr(args, "debug", False):
            raise
        from ..errors import RnnkitError

        known = isinstance(e, (RnnkitError, OSError, ValueError))
        message = " ".join(str(e).split()) or type(e).__name__  # one line, always
        if not known:
            message = f"{type(e).__name__}: {message} (--debug shows the traceback)"
        print(f"rnnkit {args.command}: error: {message}", file=sys.stderr)
        return 2 if isinstance(e, (RnnkitError, ValueError)) else 1


if __name__ == "__main__":
    sys.exit(main())
