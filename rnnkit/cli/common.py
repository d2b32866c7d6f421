"""Options and plumbing shared by every training command (the CLI conventions)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..train.trainer import TrainConfig


def add_train_arguments(p: argparse.ArgumentParser, *, epochs=10, minutes=None, lr=2e-3,
                        optimizer="adam", clip=1.0, batch_size=32) -> None:
    g = p.add_argument_group("training")
    g.add_argument("--out", type=Path, default=None,
                   help="checkpoint directory (default: a new folder under runs/)")
    g.add_argument("--epochs", type=int, default=epochs, help="maximum number of epochs")
    g.add_argument("--minutes", type=float, default=minutes,
                   help="time budget in minutes (whichever of --epochs/--minutes ends first)")
    g.add_argument("--seed", type=int, default=0, help="random seed (weights, dropout, order)")
    g.add_argument("--resume", action="store_true", help="continue the run in --out")
    g.add_argument("--batch-size", type=int, default=batch_size, help="batch size B")
    g.add_argument("--optimizer", choices=("sgd", "adam", "adamw"), default=optimizer)
    g.add_argument("--lr", type=float, default=lr, help="learning rate")
    g.add_argument("--momentum", type=float, default=0.0, help="SGD momentum")
    g.add_argument("--weight-decay", type=float, default=0.0)
    g.add_argument("--clip", type=float, default=clip,
                   help="clip the global gradient norm to this (0 disables)")
    g.add_argument("--lr-decay", type=float, default=1.0,
                   help="multiply the learning rate by this each epoch after --decay-after")
    g.add_argument("--decay-after", type=int, default=0, help="first epoch to keep full lr")
    g.add_argument("--plateau", type=int, default=None, metavar="PATIENCE",
                   help="instead of step decay: multiply lr by --lr-decay (or 0.5) when "
                        "validation stalls for PATIENCE epochs")
    g.add_argument("--patience", type=int, default=None,
                   help="early stopping: epochs without validation improvement")
    g.add_argument("--log-every", type=int, default=20, help="steps between log lines")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")


def train_config(args) -> TrainConfig:
    return TrainConfig(
        epochs=args.epochs, minutes=args.minutes, optimizer=args.optimizer, lr=args.lr,
        momentum=args.momentum, weight_decay=args.weight_decay, clip=args.clip or None,
        lr_decay=args.lr_decay, decay_after=args.decay_after, plateau_patience=args.plateau,
        patience=args.patience, log_every=args.log_every, seed=args.seed,
        progress=not args.no_progress)


def out_dir(args, kind: str) -> Path:
    if args.out is not None:
        if args.resume and not (args.out / "last").exists():
            raise FileNotFoundError(f"--resume: no run to continue in {args.out} "
                                    f"(expected {args.out / 'last'})")
        return args.out
    if args.resume:
        raise ValueError("--resume needs --out DIR (the run to continue)")
    return Path("runs") / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}"
