"""One trainer for every model type.

A *task* (language model, classifier, tagger, seq2seq) supplies the batches, the loss and the
evaluation; the trainer supplies everything else, in named phases read top to bottom::

    schedule -> (stop?) -> forward/backward -> clip -> step -> log -> evaluate -> checkpoint

A task is any object that follows the :class:`Task` protocol:

``model``                 the :class:`rnnkit.nn.module.Module` whose parameters are trained
``kind``                  checkpoint kind ("lm", "classifier", ...)
``num_batches()``         batches per epoch
``start_epoch(epoch)``    reset carried state / fix this epoch's order (derived from the seed)
``train_batch(i, rng)``   forward + backward on batch ``i``; returns ``(mean_loss, n_tokens)``
``evaluate(split)``       ``{"loss": ..., other figures}`` on "valid" or "test" (None if absent)
``state()`` / ``load_state(meta, arrays)``   what must survive a resume (e.g. carried state)
``payload()``             ``(config dict, vocab dict)`` for the checkpoint
``metric``                ``("loss", "min")`` or e.g. ``("accuracy", "max")`` to pick the best
``eval_size()``           optional: how many units (as counted by ``train_batch``) one
                          validation pass reads, so a time budget can keep room for it
``lr_scale(i)``           optional: the factor of the learning rate for batch ``i``
                          (``num_batches()`` is asked after ``start_epoch``)
``distribute(world)``     needed under an MPI launcher only: from then on ``train_batch`` reads
                          this rank's share of batch ``i`` (and may return ``(0.0, 0)`` for an
                          empty share) and ``evaluate`` returns the figures of all the ranks

Checkpoints go to ``OUT/best`` (best validation figure) and ``OUT/last`` (end of every epoch,
and wherever training stops: time budget, ``max_steps``, Ctrl-C); ``resume=True`` continues from
``OUT/last`` with weights, optimiser, RNG, schedule and data position restored, so an interrupted
run ends with exactly the weights an uninterrupted one would.  To make that hold:

* stops happen only between steps (Ctrl-C or SIGTERM sets a flag; the step in flight finishes
  first; a second one quits at once without saving, except that a save under way is finished);
* a resume inside an epoch calls ``start_epoch(epoch)`` again and then ``load_state``;
* validation uses neither the training RNG nor the task's carried state, and a validation of a
  partial epoch (a stop inside an epoch) never counts towards early stopping or the plateau
  schedule.  It may still replace ``best`` when it is the best figure so far.

``fit`` holds an OS lock on ``OUT`` (:class:`~rnnkit.train.runlock.RunLock`), so a second run
writing into the same directory is refused.  ``best/`` records its figure in its config
(``"best"``), and a resumed run compares against it, so ``best/`` never gets worse even when a
crash struck after a validation improved ``best/`` and before ``last/`` was saved.

A time budget (``minutes``) covers training *and* the validation that follows it: the trainer
stops early enough to leave room for that validation (timed on the last one, or estimated from
``eval_size()`` before the first), plus ``reserve_s`` seconds for the caller's own work.

Under an MPI launcher (``mpiexec -n N``, see :mod:`rnnkit.distributed`) the same loop runs on
every rank: the task's ``distribute(world)`` gives each rank its share of every batch and of the
validation; one ``Allreduce`` per step sums the gradients (weighted by the units each rank read),
the loss and the stop flags (a Ctrl-C on any rank, the time budget as rank 0 sees it), so every
rank clips, steps and stops alike.  Rank 0 alone writes the checkpoints, the metrics and the plot;
``last/`` also keeps every rank's random state, and a resume under another number of ranks says
that the random streams start anew.
"""

from __future__ import annotations

import contextlib
import math
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from .. import distributed
from ..checks import config_from_dict
from ..errors import CheckpointError, ConfigError, NonFiniteError
from ..nn.losses import perplexity
from ..nn.module import Module
from .checkpoint import load_checkpoint, recover, save_checkpoint
from .ema import WeightAverage
from .ntasgd import NTASGD
from .optim import clip_grad_norm, clip_grad_value, make_optimizer
from .runlock import RunLock
from .runlog import MetricsLog, Progress
from .schedules import Anneal, ReduceOnPlateau, StepDecay, warmup_factor


class Task(Protocol):
    """What :class:`Trainer` needs from a task (the table in the module docstring)."""

    model: Module
    kind: str
    metric: tuple[str, str]

    def num_batches(self) -> int: ...
    def start_epoch(self, epoch: int) -> None: ...
    def train_batch(self, i: int, rng: np.random.Generator) -> tuple[float, int]: ...
    def evaluate(self, split: str) -> dict | None: ...
    def state(self) -> tuple[dict, dict]: ...
    def load_state(self, meta: dict, arrays: dict) -> None: ...
    def payload(self) -> tuple[dict, dict]: ...


class Interrupted(KeyboardInterrupt):
    """Training stopped by Ctrl-C (SIGINT) or SIGTERM.

    ``signum``: the signal; ``status``: the conventional exit status (130 for SIGINT, 143 for
    SIGTERM); ``completed``: True when the progress up to the stop was saved, False after a
    second signal quit at once; ``saved``: the ``last/`` checkpoint on disk (with
    ``completed=False``, from an earlier save), or None when there is none.
    """

    def __init__(self, signum: int, completed: bool, saved: Path | None):
        super().__init__(signal.Signals(signum).name)
        self.signum, self.completed, self.saved = signum, completed, saved
        self.status = 128 + int(signum)


EVAL_COST = 0.4  # a validation token costs about this fraction of a training token (no backward)
PLAIN_PROGRESS_S = 10.0  # without a terminal: a progress line at most this often


def _check_count(name: str, value, allow_none: bool = False, lo: int = 1) -> None:
    """A whole number of at least ``lo`` (or None where allowed), else ConfigError."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo:
        what = "a positive integer" if lo == 1 else f"an integer >= {lo}"
        raise ConfigError(f"{name} must be {what}, got {value!r}")


@dataclass
class TrainConfig:
    """Trainer options (saved with every checkpoint)."""

    epochs: int = 10
    minutes: float | None = None
    optimizer: str = "adam"
    lr: float = 2e-3
    momentum: float = 0.0
    weight_decay: float = 0.0
    clip: float | None = 1.0  # global-norm clipping threshold; None or 0 disables
    clip_value: float | None = None
    lr_decay: float = 1.0  # step decay factor per epoch ...
    decay_after: int = 0  # ... for epochs after this one
    plateau_patience: int | None = None  # reduce lr by lr_decay when valid stalls this long
    schedule: str | None = None  # "cosine" / "linear": anneal lr to min_lr over the whole run
    warmup: int = 0  # steps of linear warm-up (with any schedule)
    min_lr: float = 0.0  # where the annealing ends
    patience: int | None = None  # early stopping: epochs without improvement
    log_every: int = 20  # steps between metrics-log lines
    seed: int = 0
    progress: bool = True  # a bar on a terminal, else a plain line now and then
    max_steps: int | None = None  # stop after this many optimiser steps in all (like minutes)
    inspect_every: int | None = None  # log W_h spectra and gate saturation every N steps
    eval_every: int | None = None  # also validate every N steps (best/ follows the best)
    ema: float | None = None  # validate and save best/ with an exponential moving average
    nonmono: int = 5  # nt-asgd: average once validation has not improved for this many checks

    def __post_init__(self):
        _check_count("epochs", self.epochs)
        _check_count("log_every", self.log_every)
        _check_count("patience", self.patience, allow_none=True)
        _check_count("plateau_patience", self.plateau_patience, allow_none=True)
        _check_count("max_steps", self.max_steps, allow_none=True)
        _check_count("inspect_every", self.inspect_every, allow_none=True)
        _check_count("eval_every", self.eval_every, allow_none=True)
        _check_count("nonmono", self.nonmono)
        if self.minutes is not None and not self.minutes > 0:
            raise ConfigError(f"minutes must be positive, got {self.minutes}")
        if not self.lr > 0:
            raise ConfigError(f"lr must be positive, got {self.lr}")
        if self.optimizer not in ("sgd", "adam", "adamw", "nt-asgd"):
            raise ConfigError(f"optimizer must be sgd, adam, adamw or nt-asgd, got "
                              f"{self.optimizer!r}")
        if self.optimizer == "nt-asgd" and self.ema is not None:
            raise ConfigError("ema and the nt-asgd optimizer both average the weights; "
                              "use one of them")
        if self.ema is not None and not 0 < self.ema < 1:
            raise ConfigError(f"ema must be in (0, 1), e.g. 0.999, got {self.ema}")
        if not 0 < self.lr_decay <= 1:
            raise ConfigError(f"lr_decay must be in (0, 1], got {self.lr_decay}")
        self._check_schedule()
        for name in ("clip", "clip_value"):
            v = getattr(self, name)
            if v is not None and v < 0:
                raise ConfigError(f"{name} must be >= 0, got {v}")

    def _check_schedule(self) -> None:
        if self.schedule is not None:
            if self.schedule not in Anneal.SHAPES:
                raise ConfigError(f"schedule must be cosine or linear, got {self.schedule!r}")
            if self.lr_decay != 1.0 or self.plateau_patience is not None:
                raise ConfigError(f"the {self.schedule} schedule (--schedule) sets the learning "
                                  "rate at every step; leave out lr_decay (--lr-decay) and "
                                  "plateau_patience (--plateau)")
        _check_count("warmup", self.warmup, lo=0)
        if not (math.isfinite(self.min_lr) and 0 <= self.min_lr < self.lr):
            raise ConfigError(f"min_lr (--min-lr) must be >= 0 and below lr ({self.lr}), got "
                              f"{self.min_lr}")

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        return config_from_dict(cls, d, "trainer")


def fmt_figure(value: float, decimals: int = 4) -> str:
    """``value`` with ``decimals`` places, or in 4 significant digits once it is huge (the
    perplexity of a diverging model is a 200-digit number otherwise)."""
    return f"{value:.{decimals}f}" if abs(value) < 1e6 else f"{value:.4g}"


def _better(value, best, mode: str) -> bool:
    if value is None or not math.isfinite(value):
        return False
    return best is None or (value < best if mode == "min" else value > best)


class Trainer:
    """Train ``task`` with ``cfg``, writing checkpoints, metrics and a plot under ``out``.

    ``echo`` prints one-line messages (epoch summaries); ``reserve_s`` is kept free at the end
    of a time budget; ``clock`` returns seconds (tests pass a fake one); ``world`` the processes
    that train together (default :func:`rnnkit.distributed.world`).
    """

    def __init__(self, task: Task, cfg: TrainConfig, out, *, resume: bool = False, echo=print,
                 reserve_s: float = 0.0, clock=time.monotonic, world=None):
        self.task, self.cfg, self.out = task, cfg, Path(out)
        self.model = task.model
        self.world = world if world is not None else distributed.world()
        self.lead = self.world.rank == 0  # the rank that writes files and messages
        self.echo = echo if self.lead else (lambda line: None)
        self.reserve_s, self.clock = reserve_s, clock
        if self.world.size > 1:
            self._distribute()
        self.params = self.model.parameters()
        self.grads = self.model.grads()
        opt_kw = {"lr": cfg.lr, "weight_decay": cfg.weight_decay}
        if cfg.optimizer in ("sgd", "nt-asgd"):
            opt_kw["momentum"] = cfg.momentum
        if cfg.optimizer == "nt-asgd":
            self.opt = NTASGD(self.params, nonmono=cfg.nonmono, **opt_kw)
        else:
            self.opt = make_optimizer(cfg.optimizer, self.params, **opt_kw)
        self.decay = StepDecay(cfg.lr, cfg.lr_decay, cfg.decay_after) if (
            cfg.lr_decay != 1.0 and cfg.plateau_patience is None) else None
        self.anneal = Anneal(cfg.lr, cfg.schedule, min_lr=cfg.min_lr) if cfg.schedule else None
        self.plateau = ReduceOnPlateau(factor=cfg.lr_decay if cfg.lr_decay < 1 else 0.5,
                                       patience=cfg.plateau_patience) if (
            cfg.plateau_patience is not None) else None
        self.rng = np.random.default_rng(
            cfg.seed if self.world.size == 1 else [cfg.seed, self.world.rank])
        self.ema = WeightAverage(self.params, cfg.ema) if cfg.ema else None
        self.epoch, self.batch, self.step = 1, 0, 0
        self.elapsed = 0.0
        self.best: float | None = None  # best validation figure of any evaluation (in best/)
        self.best_figures: dict | None = None
        self.epoch_best: float | None = None  # best over whole epochs: drives early stopping
        self.bad_epochs = 0
        self.epoch_loss, self.epoch_n = 0.0, 0  # training loss summed over the current epoch
        self.clip_count = 0
        self.eval_seconds: float | None = None
        self.show_bar = cfg.progress and sys.stderr.isatty() and self.lead
        self.resumed = False
        self._pending_task_state = None
        self._interrupted = 0  # the signal that asked to stop, or 0
        self._saving = False
        self._quit_after_save = False
        self._agreed_stop: str | None = None  # what every rank agreed at the last step
        self._agreed_used = 0.0  # rank 0's training time at the last step's reduction
        if resume:
            self._resume()
            self.world.broadcast_parameters(self.model)

    def _distribute(self) -> None:
        """Split the task across the ranks, start every rank from rank 0's weights, and give the
        model its flat gradient buffer (before the trainer keeps the gradient arrays)."""
        split = getattr(self.task, "distribute", None)
        if split is None:
            raise ConfigError(f"{type(self.task).__name__} cannot be split across "
                              f"{self.world.size} processes: it has no distribute(world)")
        split(self.world)
        self.world.broadcast_parameters(self.model)  # before the weight average copies them

    # -- state ----------------------------------------------------------------------------
    def _meta(self) -> tuple[dict, dict]:
        opt_meta, opt_arrays = self.opt.state_dict()
        task_meta, task_arrays = self.task.state()
        meta = {
            "epoch": self.epoch, "batch": self.batch, "step": self.step,
            "elapsed": self.elapsed, "best": self.best, "best_figures": self.best_figures,
            "epoch_best": self.epoch_best, "bad_epochs": self.bad_epochs,
            "epoch_loss": self.epoch_loss, "epoch_n": self.epoch_n,
            "clip_count": self.clip_count, "eval_seconds": self.eval_seconds,
            "rng": self.rng.bit_generator.state, "optimizer": opt_meta, "task": task_meta,
            "plateau": self.plateau.state_dict() if self.plateau else None,
            "train_config": asdict(self.cfg),
        }
        if self.world.size > 1:
            meta["world_size"] = self.world.size
            meta["rank_rngs"] = self.world.gather(self.rng.bit_generator.state,
                                                  what="the random states")
        arrays = {f"opt.{k}": v for k, v in opt_arrays.items()}
        arrays.update({f"task.{k}": v for k, v in task_arrays.items()})
        if self.ema is not None:
            meta["ema_updates"] = self.ema.updates
            arrays.update({f"ema.{k}": v for k, v in self.ema.avg.items()})
        if self._ntasgd_averaging():
            arrays.update({f"raw.{k}": v.copy() for k, v in self.params.items()})
        return meta, arrays

    def _ntasgd_averaging(self) -> bool:
        return isinstance(self.opt, NTASGD) and self.opt.avg is not None

    def _save(self, which: str, with_state: bool) -> Path:
        """Save ``best/`` or ``last/``; a second Ctrl-C/SIGTERM during the save takes effect
        once it is complete, so what is on disk is known."""
        self._saving = True
        try:
            path = self._write(which, with_state)
        finally:
            self._saving = False
        if self._quit_after_save:
            raise KeyboardInterrupt
        return path

    def _write(self, which: str, with_state: bool) -> Path:
        config, vocab = self.task.payload()
        config = {**config, "train": asdict(self.cfg)}
        if which == "best":
            config["best"] = {"metric": self.task.metric[0], "value": self.best,
                              "figures": self.best_figures}
        meta = arrays = None
        if with_state:
            meta, arrays = self._meta()  # every rank: the task and random states are gathered
        if not self.lead:
            return self.out / which
        if which == "best" and self.ema is not None:
            weights = {k: v.copy() for k, v in self.ema.avg.items()}
        elif self._ntasgd_averaging():  # both: the average is the model; last/ keeps the
            weights = self.opt.average()  # raw iterate in its training state (_meta)
        else:
            weights = self.model.state_dict()  # last/: the raw weights a resume continues
        return save_checkpoint(self.out / which, kind=self.task.kind, config=config,
                               weights=weights, vocab=vocab,
                               train_meta=meta, train_arrays=arrays)

    def _resume(self) -> None:
        ck = load_checkpoint(self.out / "last", kind=self.task.kind)
        if ck.train_meta is None:
            raise CheckpointError(
                f"{ck.path}: holds weights but no training state, so the run cannot be "
                "resumed exactly; start a new run (another --out) instead")
        m, a = ck.train_meta, ck.train_arrays or {}
        try:
            ck.load_into(self.model)
            raw = {k[4:]: v for k, v in a.items() if k.startswith("raw.")}
            if raw:  # nt-asgd: the weights saved are the average; training goes on from these
                self.model.load_state_dict(raw)
            self.opt.load_state_dict(m["optimizer"], {k[4:]: v for k, v in a.items()
                                                      if k.startswith("opt.")})
            self._resume_rng(m)
            self.epoch, self.batch, self.step = m["epoch"], m["batch"], m["step"]
            self.elapsed, self.best, self.bad_epochs = m["elapsed"], m["best"], m["bad_epochs"]
            self.best_figures = m.get("best_figures")
            self.epoch_best = m.get("epoch_best", self.best)
            self.epoch_loss, self.epoch_n = m.get("epoch_loss", 0.0), m.get("epoch_n", 0)
            self.clip_count = m.get("clip_count", 0)
            self.eval_seconds = m.get("eval_seconds")
            task_state = (m["task"], {k[5:]: v for k, v in a.items() if k.startswith("task.")})
            if self.plateau and m.get("plateau"):
                self.plateau.load_state_dict(m["plateau"])
            if self.ema is not None:
                saved = {k[4:]: v for k, v in a.items() if k.startswith("ema.")}
                if "ema_updates" in m and saved:
                    self.ema.load(saved, m["ema_updates"])
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError, IndexError) as e:
            detail = f"missing key {e}" if isinstance(e, KeyError) else str(e)
            raise CheckpointError(f"{ck.path}: training state unreadable ({detail})") from None
        self._best_on_disk()
        self.task.load_state(*task_state)  # now, and again after start_epoch if mid-epoch
        self._pending_task_state = task_state if self.batch > 0 else None
        self.resumed = True

    def _best_on_disk(self) -> None:
        """Take the figure of ``best/`` when it beats the one ``last/`` remembers (a crash
        after a validation saved ``best/`` and before the next ``last/``)."""
        try:
            ck = load_checkpoint(self.out / "best", kind=self.task.kind, weights_only=True)
        except CheckpointError:
            return
        rec = ck.config.get("best")
        name, mode = self.task.metric
        if not isinstance(rec, dict) or rec.get("metric") != name:
            return
        value = rec.get("value")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and \
                _better(float(value), self.best, mode):
            self.best = float(value)
            figures = rec.get("figures")
            self.best_figures = figures if isinstance(figures, dict) else None

    def _resume_rng(self, m: dict) -> None:
        """This rank's random state from the checkpoint; under another number of ranks, a
        stream derived from the seed, the rank and the step (and a note saying so)."""
        saved, size, rank = int(m.get("world_size", 1)), self.world.size, self.world.rank
        if saved == size:
            self.rng.bit_generator.state = m["rng"] if size == 1 else m["rank_rngs"][rank]
            return
        self.rng = np.random.default_rng([self.cfg.seed, rank, int(m["step"])])
        self.echo(f"note: the run was saved by {saved} process(es) and resumes in {size}: "
                  "every batch stays the same, but the random streams (dropout, sampling) "
                  "start anew, so the run will not repeat an uninterrupted one exactly")

    # -- the loop -------------------------------------------------------------------------
    def fit(self) -> dict:
        """Train until the epochs, the time budget or ``max_steps`` run out, or early stopping.

        Returns a summary dict: the last epoch record (``epoch``, ``train_loss``,
        ``valid_<figure>``, ...) and ``reason``, ``step``, ``time``, ``best``, ``best_figures``
        (all validation figures where ``best`` was reached), ``out``.  Raises :class:`Interrupted`
        (a ``KeyboardInterrupt``) on Ctrl-C or SIGTERM, after saving ``last``;
        :class:`NonFiniteError` on a NaN/inf loss or gradient (``last`` keeps the previous good
        state); :class:`CheckpointError` when another run holds ``out``.
        """
        with RunLock(self.out) if self.lead else contextlib.nullcontext():
            return self._fit()

    def _fit(self) -> dict:
        if self.lead:
            self.out.mkdir(parents=True, exist_ok=True)
        self.log = MetricsLog(self.out / "metrics.jsonl") if self.lead else _NoLog()
        if self.resumed:
            self.log.log("resume", epoch=self.epoch, batch=self.batch, step=self.step)
        else:
            self.log.log("start", params=self.model.num_parameters(), train=asdict(self.cfg))
        self.t_start = self.clock() - self.elapsed
        # the throughput of this process (since the start or the resume), and its first step
        # apart: that one also loads or compiles the kernels
        self._train_seconds, self._train_units = 0.0, 0
        self._timed_first = False
        self._record: dict = {}
        previous = self._catch_signals()
        try:
            reason = self._done_reason()
            while reason is None:
                reason = self._run_epoch()
        except NonFiniteError as e:
            self._close_log("diverged", error=str(e))
            raise NonFiniteError(f"{e}; {self._kept()}") from None
        except KeyboardInterrupt:  # a second Ctrl-C: quit at once, keep the last checkpoint
            self._close_log("killed")
            raise self._interruption(completed=False) from None
        except Exception as e:  # a full disk, ...: the log still says what happened
            self._close_log("failed", error=str(e))
            raise
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        self.world.barrier()  # the files rank 0 wrote are complete for every rank
        if reason == "interrupted":
            self._close_log("interrupted", epoch=self.epoch, step=self.step)
            raise self._interruption(completed=True)
        self._close_log("end", reason=reason, epoch=self.epoch, step=self.step,
                        time=self.elapsed)
        return {"epoch": self.epoch - 1, **self._record, "reason": reason, "step": self.step,
                "time": self.elapsed, "best": self.best, "best_figures": self.best_figures,
                "out": str(self.out)}

    def _done_reason(self) -> str | None:
        """Why training cannot go on (epochs done, budget spent), or None."""
        if self.epoch > self.cfg.epochs:
            return "epochs"
        if self.cfg.max_steps is not None and self.step >= self.cfg.max_steps:
            return "steps"
        reason = None
        if self.cfg.minutes is not None and \
                self.elapsed + self._reserve() >= self.cfg.minutes * 60.0:
            reason = "time"
        return self.world.bcast(reason, what="the stop decision")  # rank 0's clock decides

    def _run_epoch(self) -> str | None:  # noqa: C901 -- the training phases, in order
        cfg, task = self.cfg, self.task
        # schedule
        if self.decay is not None:
            self.decay.apply(self.opt, self.epoch)
        task.start_epoch(self.epoch)
        if self._pending_task_state is not None:  # resumed inside this epoch
            task.load_state(*self._pending_task_state)
            self._pending_task_state = None
        n_batches = task.num_batches()  # after start_epoch: it may fix this epoch's batches
        bar = Progress(total=n_batches, desc=f"epoch {self.epoch}", unit="batch",
                       disable=not self.show_bar)
        bar.update(self.batch)
        self._interval = [0.0, 0, self.clock()]  # loss sum, units, start: since the last log
        self._last_line = self.clock()
        stop = None
        while self.batch < n_batches:
            stop = self._stop_reason()
            if stop is not None:
                break
            t0 = self.clock()
            # forward + backward
            self.model.zero_grad()
            watch = bool(cfg.inspect_every) and (self.step + 1) % cfg.inspect_every == 0
            if watch:
                from ..inspect.gates import GateMonitor

                with GateMonitor(self.model, enabled=True) as gates:
                    loss, n = task.train_batch(self.batch, self.rng)
            else:
                loss, n = task.train_batch(self.batch, self.rng)
            if self.world.size > 1:
                loss, n = self._reduce_step(loss, n)
            if not math.isfinite(loss):
                raise NonFiniteError(
                    f"loss became {loss} at epoch {self.epoch}, step {self.step + 1}: "
                    "exploding gradients or a learning rate too high; lower --lr or "
                    "clip gradients (--clip)")
            # clip (a non-finite norm raises NonFiniteError before any weight changes)
            norm = clip_grad_norm(self.grads, cfg.clip if cfg.clip else math.inf)
            clipped = bool(cfg.clip) and norm > cfg.clip
            if cfg.clip_value:
                clip_grad_value(self.grads, cfg.clip_value)
            self.clip_count += int(clipped)
            # step (a task may scale the learning rate of a batch: random window lengths);
            # clip_grad_norm checked the gradients are finite
            if self.anneal is not None:
                self.opt.lr = self.anneal.lr_at(self._progress(n_batches))
            scale = task.lr_scale(self.batch) if hasattr(task, "lr_scale") else 1.0
            scale *= warmup_factor(self.step, cfg.warmup)
            self._step_lr = self.opt.lr * scale  # the rate this step uses (logged)
            if scale != 1.0:
                base, self.opt.lr = self.opt.lr, self._step_lr
                self.opt.step(self.grads, check_finite=False)
                self.opt.lr = base
            else:
                self.opt.step(self.grads, check_finite=False)
            if self.ema is not None:
                self.ema.update()
            self.batch += 1
            self.step += 1
            if self.world.size > 1 and self.step % self.world.check_every == 0:
                self.world.check_weights(self.model, self.step)
            if watch:
                from ..inspect.spectrum import spectrum_record

                self.log.log("inspect", epoch=self.epoch, step=self.step,
                             **spectrum_record(self.model, radius=False), **gates.record())
            self.epoch_loss += loss * n
            self.epoch_n += n
            if not self._timed_first:
                self._timed_first = True
            else:
                self._train_seconds += self.clock() - t0
                self._train_units += n
            # log
            self._interval[0] += loss * n
            self._interval[1] += n
            if self.step % cfg.log_every == 0 or self.batch == n_batches:
                self._log_step(bar, norm, clipped, n_batches)
            if cfg.eval_every and self.step % cfg.eval_every == 0 and self.batch < n_batches:
                self._validate_between()
            bar.update(1)
        bar.close()
        if stop == "interrupted":
            self.elapsed = self.clock() - self.t_start
            self._save("last", with_state=True)
            return stop
        finished = self.batch >= n_batches
        ended = self.epoch
        train_loss = self.epoch_loss / self.epoch_n if self.epoch_n else None
        if finished:
            self.epoch, self.batch = self.epoch + 1, 0
            self.epoch_loss, self.epoch_n = 0.0, 0
        # evaluate + checkpoint
        early = self._end_epoch(ended, train_loss, partial=not finished)
        if stop is None and early:
            stop = "early-stopping"
        if stop is None:
            stop = self._done_reason()
        if stop is None and self._adopt_signal(self.world.sum([self._interrupted])[0]):
            stop = "interrupted"
        return stop

    def _adopt_signal(self, total: float) -> bool:
        """``total``: the stop signals of every rank, summed.  A rank that got none takes the
        one another rank got (or SIGINT when several did), so that all report it alike."""
        if total and not self._interrupted:
            k = int(round(total))
            self._interrupted = k if k in (signal.SIGINT, signal.SIGTERM) else signal.SIGINT
        return bool(total)

    def _reduce_step(self, loss: float, n: int) -> tuple[float, int]:
        """Sum the gradients over the ranks (see :func:`rnnkit.distributed.World.allreduce_grads`)
        with the loss and the stop flags in the same call: a Ctrl-C on any rank, and the time
        budget as rank 0's clock sees it.  Returns the global mean loss and unit count."""
        time_up = self.lead and self._local_stop() == "time"
        timed = self.lead and self.anneal is not None and self.cfg.minutes is not None
        used = self._budget_used() if timed else 0.0
        total, (loss_sum, interrupted, out_of_time, used) = self.world.allreduce_grads(
            self.model, n, [loss * n, float(self._interrupted), float(time_up), used])
        self._agreed_used = used
        interrupted = self._adopt_signal(interrupted)
        self._agreed_stop = "interrupted" if interrupted else "time" if out_of_time else None
        return loss_sum / max(total, 1.0), int(round(total))

    def _progress(self, n_batches: int) -> float:
        """How far the run is, for the annealed schedules: the largest of the fractions of the
        epochs, of ``max_steps`` and of the time budget done (the time as rank 0's clock saw
        it at this step's reduction, so every rank agrees).  The time counts the room kept
        for the last validation, so the fraction nearly reaches 1 where the budget stops
        training."""
        cfg = self.cfg
        done = (self.epoch - 1 + self.batch / max(n_batches, 1)) / cfg.epochs
        if cfg.max_steps is not None:
            done = max(done, self.step / cfg.max_steps)
        if cfg.minutes is not None:
            used = self._agreed_used if self.world.size > 1 else self._budget_used()
            done = max(done, used / (cfg.minutes * 60.0))
        return done

    def _budget_used(self) -> float:
        """The budget spent, with the room kept for the last validation once one has been
        timed (before that, the first steps' cost would make an estimate jump)."""
        return self.clock() - self.t_start + (self.eval_seconds or 0.0) + self.reserve_s

    def _stop_reason(self) -> str | None:
        if self.world.size > 1:  # every rank stops at the same step
            if self.cfg.max_steps is not None and self.step >= self.cfg.max_steps:
                return "steps"
            return self._agreed_stop
        return self._local_stop()

    def _local_stop(self) -> str | None:
        if self._interrupted:
            return "interrupted"
        if self.cfg.max_steps is not None and self.step >= self.cfg.max_steps:
            return "steps"
        if self.cfg.minutes is not None:
            used = self.clock() - self.t_start
            if used + self._reserve() >= self.cfg.minutes * 60.0:
                return "time"
        return None

    def _reserve(self) -> float:
        """Seconds to keep free in a time budget: the coming validation and ``reserve_s``.
        Before a validation has been timed, the validation is estimated from the training
        steps after the first (which also loads or compiles the kernels, and alone would
        stop a short budget early)."""
        if self.eval_seconds is not None:
            return self.eval_seconds + self.reserve_s
        size = getattr(self.task, "eval_size", None)
        if size is None or self._train_units == 0:
            return self.reserve_s
        per_unit = self._train_seconds / self._train_units
        return size() * per_unit * EVAL_COST + self.reserve_s

    def _log_step(self, bar: Progress, norm: float, clipped: bool, n_batches: int) -> None:
        total, units, since = self._interval
        now = self.clock()
        mean = total / max(units, 1)
        tps = units / max(now - since, 1e-9)
        self.log.log("step", epoch=self.epoch, step=self.step, loss=mean, ppl=perplexity(mean),
                     lr=self._step_lr, grad_norm=norm, clipped=clipped, clip=self.cfg.clip,
                     tokens_per_s=tps, time=now - self.t_start)
        bar.update(0, loss=mean, ppl=perplexity(mean), tokens_per_s=tps, grad_norm=norm)
        if self.cfg.progress and not self.show_bar and now - self._last_line >= PLAIN_PROGRESS_S:
            self.echo(f"epoch {self.epoch} step {self.step} ({self.batch}/{n_batches}) | "
                      f"loss {mean:.4f} | ppl {fmt_figure(perplexity(mean), 2)} | "
                      f"{tps:,.0f} tok/s | |g| {norm:.3g} | {_clock(now - self.t_start)}")
            self._last_line = now
        self._interval = [0.0, 0, now]

    def _end_epoch(self, epoch: int, train_loss, partial: bool) -> bool:
        """Validate, update best/early-stopping state, save checkpoints, log; returns True
        when early stopping says to stop."""
        name, mode = self.task.metric
        t0 = self.clock()
        figures = self._evaluate("valid")
        self.eval_seconds = self.clock() - t0
        self.elapsed = self.clock() - self.t_start
        record = {"epoch": epoch, "step": self.step, "time": self.elapsed, "lr": self.opt.lr,
                  "clip_count": self.clip_count, "partial": partial}
        if train_loss is not None:
            record["train_loss"] = train_loss
            record["train_ppl"] = perplexity(train_loss)
        record.update({f"valid_{k}": v for k, v in figures.items()})
        self.clip_count = 0
        value = figures.get(name)
        improved = _better(value, self.best, mode)
        if improved:
            self.best, self.best_figures = float(value), dict(figures)
        if value is not None and not partial:  # only whole epochs drive the schedule
            if _better(value, self.epoch_best, mode):
                self.epoch_best, self.bad_epochs = float(value), 0
            else:
                self.bad_epochs += 1
            if self.plateau is not None:
                self.plateau.step(value if mode == "min" else -value, self.opt)
            self._observe(value, mode)
        if improved or value is None or not (self.out / "best").exists():
            self._save("best", with_state=False)
        self._save("last", with_state=True)
        record["best"] = self.best
        self.log.log("epoch", **record)
        self._record = record
        parts = [f"epoch {epoch}" + (" (partial)" if partial else "")]
        if train_loss is not None:
            parts.append(f"train loss {fmt_figure(train_loss)}")
        parts += [f"valid {k} {fmt_figure(v)}" for k, v in figures.items()
                  if isinstance(v, float)]
        parts.append(_clock(self.elapsed) + (" *" if improved else ""))
        self.echo(" | ".join(parts))
        return bool(self.cfg.patience) and self.bad_epochs >= self.cfg.patience

    def _observe(self, value: float, mode: str) -> None:
        """NT-ASGD: one more validation check; say so when averaging starts."""
        if not isinstance(self.opt, NTASGD) or value is None or not math.isfinite(value):
            return
        if self.opt.observe(value if mode == "min" else -value):
            self.log.log("nt-asgd", epoch=self.epoch, step=self.step)
            self.echo(f"step {self.step}: no improvement for {self.cfg.nonmono} checks; "
                      "averaging the weights from now on (NT-ASGD)")

    def _evaluate(self, split: str) -> dict:
        """The task's figures on ``split``, with the averaged weights when ``ema`` or NT-ASGD
        averages them."""
        if self.ema is not None:
            with self.ema.swapped():
                return self.task.evaluate(split) or {}
        if self._ntasgd_averaging():
            with self.opt.swapped():
                return self.task.evaluate(split) or {}
        return self.task.evaluate(split) or {}

    def _validate_between(self) -> None:
        """Validation inside an epoch (``eval_every``): keeps ``best/`` at the best weights
        seen, without touching early stopping or the schedule.  It is one of NT-ASGD's checks
        (it comes at the same steps in a resumed run, so a resume stays exact)."""
        name, mode = self.task.metric
        t0 = self.clock()
        figures = self._evaluate("valid")
        self.eval_seconds = self.clock() - t0
        value = figures.get(name)
        improved = _better(value, self.best, mode)
        if improved:
            self.best, self.best_figures = float(value), dict(figures)
            self._save("best", with_state=False)
        self._observe(value, mode)
        self.log.log("valid", epoch=self.epoch, step=self.step,
                     time=self.clock() - self.t_start, best=self.best,
                     **{f"valid_{k}": v for k, v in figures.items()})
        parts = [f"step {self.step}"] + [f"valid {k} {fmt_figure(v)}" for k, v in figures.items()
                                          if isinstance(v, float)]
        self.echo(" | ".join(parts) + (" *" if improved else ""))

    # -- endings --------------------------------------------------------------------------
    def _catch_signals(self) -> dict:
        """First Ctrl-C or SIGTERM: finish the step in flight, save and stop; second: stop at
        once (after a save under way).  Returns the previous handlers."""
        if threading.current_thread() is not threading.main_thread():
            return {}

        def handler(signum, frame):
            if self._interrupted:
                if self._saving:
                    self._quit_after_save = True
                    return
                raise KeyboardInterrupt
            self._interrupted = signum
            what = "terminated (SIGTERM)" if signum == signal.SIGTERM else "interrupted"
            self.echo(f"{what}: saving after this step (Ctrl-C again to quit at once)")

        return {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}

    def _interruption(self, completed: bool) -> Interrupted:
        # rank 0 alone repairs the run directory (another rank could race its save)
        last = recover(self.out / "last") if self.lead else self.out / "last"
        saved = last if (last / "manifest.json").exists() else None
        return Interrupted(self._interrupted or signal.SIGINT, completed and saved is not None,
                           saved)

    def _kept(self) -> str:
        last = self.out / "last"
        if last.exists():
            return f"the last good checkpoint is kept in {last}"
        return "no checkpoint was saved"

    def _close_log(self, event: str, **fields) -> None:
        self.log.log(event, **fields)
        self.log.close()
        if self.lead:
            self._plot()

    def _plot(self) -> None:
        try:
            from .plotting import plot_training
            from .runlog import read_metrics

            plot_training(read_metrics(self.out / "metrics.jsonl"), self.out / "training.png")
        except ImportError:  # matplotlib missing: the log still has everything
            pass
        except Exception as e:  # noqa: BLE001 -- a plot must never lose a finished run
            self.echo(f"warning: could not draw {self.out / 'training.png'} ({e})")


class _NoLog:
    """The metrics log of a rank other than 0: writes nothing."""

    def log(self, event: str, **fields) -> dict:
        return {}

    def close(self) -> None:
        pass


def _clock(seconds: float) -> str:
    m, s = divmod(round(seconds), 60)
    return f"{m}m{s:02d}s"
