"""Options and plumbing shared by every training command (the CLI conventions).

Every training command takes ``--out DIR`` (default: a new folder under ``runs/``),
``--epochs``, ``--minutes``, ``--seed`` and ``--resume``.  With ``--resume`` the run in
``--out`` continues with the options it was started with; options written on the resuming
command line (``--epochs 20``, ``--minutes 10``) replace the saved ones
(:func:`resume_train_config`).
"""

from __future__ import annotations

import argparse
import math
import signal
import sys
import time
from dataclasses import asdict, fields
from pathlib import Path

from ..errors import CheckpointError, ConfigError
from .checkpoint import MANIFEST, recover
from .trainer import Interrupted, TrainConfig

# TrainConfig field -> the argparse dest that sets it
_DESTS = {"plateau_patience": "plateau", "progress": "no_progress"}


def add_train_arguments(p: argparse.ArgumentParser, *, epochs=10, minutes=None, lr=2e-3,
                        optimizer="adam", clip=1.0, batch_size=32, epochs_help=None,
                        minutes_help=None) -> None:
    g = p.add_argument_group("training")
    g.add_argument("--out", type=path_arg, default=None,
                   help="checkpoint directory (default: a new folder under runs/)")
    g.add_argument("--epochs", type=positive_int, default=epochs,
                   help=epochs_help or "maximum number of epochs")
    g.add_argument("--minutes", type=positive_float, default=minutes,
                   help=minutes_help or "time budget in minutes, validation included; "
                   "whichever of --epochs/--minutes ends first (default: no limit)")
    g.add_argument("--max-steps", type=positive_int, default=None,
                   help="stop after this many optimiser steps in all (default: no limit)")
    g.add_argument("--seed", type=nonneg_int, default=0,
                   help="random seed (weights, dropout, order)")
    g.add_argument("--resume", action="store_true",
                   help="continue the run in --out where it stopped, with its saved options")
    g.add_argument("--batch-size", type=positive_int, default=batch_size, help="batch size B")
    g.add_argument("--optimizer", choices=("sgd", "adam", "adamw", "nt-asgd"), default=optimizer,
                   help="optimiser; nt-asgd: SGD that averages the weights once validation has "
                        "not improved for --nonmono checks (validation and checkpoints use the "
                        "average)")
    g.add_argument("--nonmono", type=positive_int, default=5, metavar="N",
                   help="nt-asgd: validations (epochs, and --eval-every) without improvement "
                        "before averaging starts")
    g.add_argument("--lr", type=positive_float, default=lr, help="learning rate")
    g.add_argument("--momentum", type=nonneg_float, default=0.0, help="SGD momentum")
    g.add_argument("--weight-decay", type=nonneg_float, default=0.0, help="L2 weight decay")
    g.add_argument("--clip", type=nonneg_float, default=clip,
                   help="clip the global gradient norm to this (0 disables)")
    g.add_argument("--lr-decay", type=float, default=1.0,
                   help="multiply the learning rate by this each epoch after --decay-after")
    g.add_argument("--decay-after", type=nonneg_int, default=0, help="last epoch at the full lr")
    g.add_argument("--plateau", type=positive_int, default=None, metavar="PATIENCE",
                   help="instead of step decay: multiply lr by --lr-decay (or 0.5) when "
                        "validation stalls for PATIENCE epochs (default: off)")
    g.add_argument("--schedule", choices=("cosine", "linear"), default=None,
                   help="anneal the learning rate from --lr to --min-lr over the whole run "
                        "(the epochs, --max-steps or the --minutes budget, whichever ends "
                        "first), at every step; instead of --lr-decay and --plateau "
                        "(default: off)")
    g.add_argument("--min-lr", type=nonneg_float, default=0.0,
                   help="where --schedule ends")
    g.add_argument("--warmup", type=nonneg_int, default=0, metavar="STEPS",
                   help="raise the learning rate linearly from lr/STEPS to lr over the first "
                        "STEPS steps (with any schedule)")
    g.add_argument("--patience", type=positive_int, default=None,
                   help="early stopping: epochs without validation improvement "
                        "(default: off)")
    g.add_argument("--log-every", type=positive_int, default=20,
                   help="steps between metrics.jsonl lines")
    g.add_argument("--eval-every", type=positive_int, default=None, metavar="N",
                   help="also validate every N steps inside an epoch; best/ keeps the best "
                        "weights seen (default: once per epoch)")
    g.add_argument("--ema", type=float, default=None, metavar="DECAY",
                   help="keep an exponential moving average of the weights (e.g. 0.999); "
                        "validation, best/ and the test use the average (default: off)")
    g.add_argument("--inspect-every", type=positive_int, default=None, metavar="N",
                   help="every N steps log the singular values of each W_h and the gate "
                        "saturation to metrics.jsonl (default: off)")
    g.add_argument("--ignore-memory-check", action="store_true",
                   help="train even when the estimated memory exceeds what is available")
    g.add_argument("--no-progress", action="store_true",
                   help="no progress display (default: a bar on a terminal, else a line "
                        "every 10 s)")


def add_awd_arguments(g, *, unit: str = "sequence", note: str = "") -> None:
    """``--dropout-embed``, ``--weight-drop`` and ``--locked`` (AWD-LSTM's regularisers, off
    by default) in the argument group ``g``; ``unit``: what a locked mask lasts for."""
    g.add_argument("--dropout-embed", type=float, default=0.0, metavar="P",
                   help="embedding dropout: drop whole words (rows of the embedding matrix), "
                        f"one draw per batch, the rest scaled by 1/(1-P){note}")
    g.add_argument("--weight-drop", type=float, default=0.0, metavar="P",
                   help="DropConnect on every recurrent matrix W_h, one mask per batch")
    g.add_argument("--locked", action="store_true",
                   help="locked (variational) dropout: every dropout mask over time is drawn "
                        f"once per {unit} and reused at every step")


def train_config(args) -> TrainConfig:
    return TrainConfig(
        epochs=args.epochs, minutes=args.minutes, optimizer=args.optimizer, lr=args.lr,
        momentum=args.momentum, weight_decay=args.weight_decay, clip=args.clip or None,
        lr_decay=args.lr_decay, decay_after=args.decay_after, plateau_patience=args.plateau,
        schedule=getattr(args, "schedule", None), warmup=getattr(args, "warmup", 0),
        min_lr=getattr(args, "min_lr", 0.0),
        patience=args.patience, log_every=args.log_every, seed=args.seed,
        progress=not args.no_progress, max_steps=getattr(args, "max_steps", None),
        inspect_every=getattr(args, "inspect_every", None),
        eval_every=getattr(args, "eval_every", None), ema=getattr(args, "ema", None),
        nonmono=getattr(args, "nonmono", 5))


def resume_train_config(args, saved: dict) -> TrainConfig:
    """The saved trainer options, with those given on this command line put over them.

    ``args.given`` (set by :func:`rnnkit.cli.main.main`) names the options the user wrote;
    without it every option of ``args`` counts as given.  The progress display always
    follows this command line.
    """
    fresh = asdict(train_config(args))
    given = getattr(args, "given", None)
    if given is None:
        return TrainConfig(**fresh)
    try:
        old = asdict(TrainConfig.from_dict(saved))
    except (TypeError, ConfigError) as e:
        raise CheckpointError(f"--resume: the saved trainer options are unreadable ({e})") from None
    merged = {}
    for f in fields(TrainConfig):
        dest = _DESTS.get(f.name, f.name)
        merged[f.name] = fresh[f.name] if (dest in given or f.name == "progress") else old[f.name]
    return TrainConfig(**merged)


def out_dir(args, kind: str) -> Path:
    """``--out`` (which must hold a run for ``--resume``, and must not for a new run), or a
    new folder ``runs/<kind>-<date>-<time>`` (rank 0's name, under an MPI launcher).

    A ``last/`` save cut by a crash between its two renames is put back first (by rank 0 alone
    under an MPI launcher).  A directory with ``best/`` but no ``last/`` (a run stopped before
    its first ``last/`` save) cannot be resumed; a new run may go there and replaces ``best/``.
    """
    from ..distributed import world

    if args.out is not None:
        out = Path(args.out)
        for d in (out, *out.resolve().parents):
            if (d / MANIFEST).is_file():
                raise ConfigError(f"--out {out}: inside the checkpoint {d}; a run directory "
                                  "holds checkpoints, so choose a directory outside it")
        if world().rank == 0:
            last, best = recover(out / "last"), recover(out / "best")
        world().barrier()  # the other ranks look once rank 0 has put back a cut save
        if world().rank != 0:
            last, best = out / "last", out / "best"
        if args.resume and not last.exists():
            if best.exists():
                raise CheckpointError(
                    f"--resume: {out} holds best/ but no last/ (the run stopped before its "
                    "first save of last/), so there is no training state to continue; start "
                    "it again with the same --out without --resume")
            raise CheckpointError(f"--resume: no run to continue in {out} "
                                  f"(expected a checkpoint at {out / 'last'})")
        if not args.resume and last.exists():
            raise ConfigError(f"{out} already holds a run; add --resume to continue it, "
                              "or choose another --out")
        if not args.resume and best.exists() and world().rank == 0:
            print(f"warning: {out} holds best/ but no last/ (a run stopped before its first "
                  "save of last/); a new run starts there and replaces best/", file=sys.stderr)
        return out
    if args.resume:
        raise ConfigError("--resume needs --out DIR (the run to continue)")
    base = Path("runs") / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}"
    out, i = base, 1
    while out.exists():
        i += 1
        out = base.with_name(f"{base.name}-{i}")
    return world().bcast(out, what="the run directory")


def report_interrupt(command: str, out, exc: KeyboardInterrupt, resume: str | None = None) -> int:
    """Print what an interruption left on disk, one line on stderr; returns the exit status
    (130 after Ctrl-C, 143 after SIGTERM).  ``resume``: how to continue (default: "continue
    with --out OUT --resume")."""
    prefix = f"rnnkit {command}"
    if isinstance(exc, Interrupted):
        what = "terminated (SIGTERM)" if exc.signum == signal.SIGTERM else "interrupted"
        status, saved, completed = exc.status, exc.saved, exc.completed
    else:  # before the trainer took over the signals
        last = recover(Path(out) / "last")
        what, status, completed = "interrupted", 130, False
        saved = last if (last / MANIFEST).exists() else None
    resume = resume or f"continue with --out {out} --resume"
    if completed:
        line = f"{what}; progress saved in {saved}; {resume}"
    elif saved is not None:
        line = f"{what} at once, before saving; {saved} keeps an earlier save; {resume}"
    else:
        line = f"{what} at once; nothing was saved"
    print(f"{prefix}: {line}", file=sys.stderr)
    return status


# -- argparse types: a bad value is a one-line usage error naming the option ---------------------


def _number(kind, text: str):
    try:
        value = kind(text)
    except ValueError:
        noun = "an integer" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"expected {noun}, got {text!r}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = _number(int, text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def nonneg_int(text: str) -> int:
    """argparse type: an integer >= 0 (a seed, a count where 0 means off)."""
    value = _number(int, text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    value = _number(float, text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def nonneg_float(text: str) -> float:
    """argparse type: a finite number >= 0."""
    value = _number(float, text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def probability(text: str) -> float:
    """argparse type: a number in [0, 1]."""
    value = _number(float, text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}")
    return value


def fraction(text: str) -> float:
    """argparse type: a number in [0, 1) (a validation fraction)."""
    value = _number(float, text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}")
    return value


def path_arg(text: str) -> Path:
    """argparse type: a non-empty path."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a path, got an empty string")
    return Path(text)
