"""One trainer for every model type.

A *task* (language model, classifier, tagger, seq2seq) supplies the batches, the loss and the
evaluation; the trainer supplies everything else, in named phases read top to bottom::

    schedule -> (resume) -> forward/backward -> clip -> step -> log -> evaluate -> checkpoint

A task is any object with:

``model``                 a :class:`rnnkit.module.Module` with ``config_dict()``
``kind``                  checkpoint kind ("lm", "classifier", ...)
``num_batches()``         batches per epoch
``start_epoch(epoch)``    reset carried state / fix this epoch's order (derived from the seed)
``train_batch(i, rng)``   forward + backward on batch ``i``; returns ``(mean_loss, n_tokens)``
``evaluate(split)``       ``{"loss": ..., other figures}`` on "valid" or "test" (None if absent)
``state()`` / ``load_state(meta, arrays)``   what must survive a resume (e.g. carried state)
``payload()``             ``(config dict, vocab dict)`` for the checkpoint
``metric``                ``("loss", "min")`` or e.g. ``("accuracy", "max")`` to pick the best

Checkpoints go to ``OUT/best`` (best validation figure) and ``OUT/last`` (end of every epoch,
and wherever training stops: time budget, Ctrl-C); ``resume=True`` continues from ``OUT/last``
with weights, optimiser, RNG, schedule and data position restored, so an interrupted run ends
exactly where an uninterrupted one would.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from ..checkpoint import load_checkpoint, save_checkpoint
from ..errors import CheckpointError, ConfigError, NonFiniteError
from ..losses import perplexity
from ..optim import ReduceOnPlateau, StepDecay, clip_grad_norm, clip_grad_value, make_optimizer
from ..runlog import MetricsLog, Progress


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
    patience: int | None = None  # early stopping: epochs without improvement
    log_every: int = 20  # steps between metrics-log lines
    seed: int = 0
    progress: bool = True

    def __post_init__(self):
        if self.epochs < 1:
            raise ConfigError(f"epochs must be at least 1, got {self.epochs}")
        if self.minutes is not None and self.minutes <= 0:
            raise ConfigError(f"minutes must be positive, got {self.minutes}")
        if self.lr <= 0:
            raise ConfigError(f"lr must be positive, got {self.lr}")

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ConfigError(f"unknown trainer config keys: {sorted(unknown)}")
        return cls(**d)


class Trainer:
    """Train ``task`` with ``cfg``, writing checkpoints, metrics and a plot under ``out``."""

    def __init__(self, task, cfg: TrainConfig, out, *, resume: bool = False, echo=print):
        self.task, self.cfg, self.out = task, cfg, Path(out)
        self.model = task.model
        self.echo = echo
        self.params = self.model.parameters()
        self.grads = self.model.grads()
        opt_kw = {"lr": cfg.lr, "weight_decay": cfg.weight_decay}
        if cfg.optimizer == "sgd":
            opt_kw["momentum"] = cfg.momentum
        self.opt = make_optimizer(cfg.optimizer, self.params, **opt_kw)
        self.decay = StepDecay(cfg.lr, cfg.lr_decay, cfg.decay_after) if (
            cfg.lr_decay != 1.0 and cfg.plateau_patience is None) else None
        self.plateau = ReduceOnPlateau(factor=cfg.lr_decay if cfg.lr_decay < 1 else 0.5,
                                       patience=cfg.plateau_patience) if (
            cfg.plateau_patience is not None) else None
        self.rng = np.random.default_rng(cfg.seed)
        self.epoch, self.batch, self.step = 1, 0, 0
        self.elapsed = 0.0
        self.best: float | None = None
        self.bad_epochs = 0
        self.clip_count = 0
        self.resumed = False
        if resume:
            self._resume()

    # -- state ----------------------------------------------------------------------------
    def _meta(self) -> tuple[dict, dict]:
        opt_meta, opt_arrays = self.opt.state_dict()
        task_meta, task_arrays = self.task.state()
        meta = {
            "epoch": self.epoch, "batch": self.batch, "step": self.step,
            "elapsed": self.elapsed, "best": self.best, "bad_epochs": self.bad_epochs,
            "rng": self.rng.bit_generator.state, "optimizer": opt_meta, "task": task_meta,
            "plateau": self.plateau.state_dict() if self.plateau else None,
            "train_config": asdict(self.cfg),
        }
        arrays = {f"opt.{k}": v for k, v in opt_arrays.items()}
        arrays.update({f"task.{k}": v for k, v in task_arrays.items()})
        return meta, arrays

    def _save(self, which: str, with_state: bool) -> Path:
        config, vocab = self.task.payload()
        config = {**config, "train": asdict(self.cfg)}
        meta = arrays = None
        if with_state:
            meta, arrays = self._meta()
        return save_checkpoint(self.out / which, kind=self.task.kind, config=config,
                               weights=self.model.state_dict(), vocab=vocab,
                               train_meta=meta, train_arrays=arrays)

    def _resume(self) -> None:
        ck = load_checkpoint(self.out / "last", kind=self.task.kind)
        if ck.train_meta is None:
            raise CheckpointError(f"{ck.path}: holds no training state; cannot resume")
        self.model.load_state_dict(ck.weights)
        m, a = ck.train_meta, ck.train_arrays or {}
        self.opt.load_state_dict(m["optimizer"], {k[4:]: v for k, v in a.items()
                                                  if k.startswith("opt.")})
        self.task.load_state(m["task"], {k[5:]: v for k, v in a.items()
                                         if k.startswith("task.")})
        self.rng.bit_generator.state = m["rng"]
        self.epoch, self.batch, self.step = m["epoch"], m["batch"], m["step"]
        self.elapsed, self.best, self.bad_epochs = m["elapsed"], m["best"], m["bad_epochs"]
        if self.plateau and m.get("plateau"):
            self.plateau.load_state_dict(m["plateau"])
        self.resumed = True

    # -- the loop -------------------------------------------------------------------------
    def fit(self) -> dict:
        cfg, task = self.cfg, self.task
        self.out.mkdir(parents=True, exist_ok=True)
        log = MetricsLog(self.out / "metrics.jsonl")
        if not self.resumed:
            log.log("start", params=self.model.num_parameters(), train=asdict(cfg))
        budget = None if cfg.minutes is None else cfg.minutes * 60.0
        t_start = time.monotonic() - self.elapsed
        n_batches = task.num_batches()
        stop_reason = None
        summary: dict = {}
        try:
            while self.epoch <= cfg.epochs and stop_reason is None:
                # schedule
                if self.decay is not None:
                    self.decay.apply(self.opt, self.epoch)
                if self.batch == 0:
                    task.start_epoch(self.epoch)
                bar = Progress(total=n_batches, desc=f"epoch {self.epoch}", unit="batch",
                               disable=not cfg.progress)
                run_loss, run_n, t_last, tok_last = 0.0, 0, time.monotonic(), 0
                while self.batch < n_batches:
                    if budget is not None and time.monotonic() - t_start >= budget:
                        stop_reason = "time"
                        break
                    # forward + backward
                    self.model.zero_grad()
                    loss, n = task.train_batch(self.batch, self.rng)
                    if not math.isfinite(loss):
                        raise NonFiniteError(
                            f"loss became {loss} at epoch {self.epoch}, step {self.step + 1}: "
                            "exploding gradients or a learning rate too high; lower --lr or "
                            "clip gradients (--clip)")
                    # clip
                    if cfg.clip:
                        norm = clip_grad_norm(self.grads, cfg.clip)
                        clipped = norm > cfg.clip
                    else:
                        norm = clip_grad_norm(self.grads, math.inf)
                        clipped = False
                    if cfg.clip_value:
                        clip_grad_value(self.grads, cfg.clip_value)
                    self.clip_count += int(clipped)
                    # step
                    self.opt.step(self.grads)
                    self.batch += 1
                    self.step += 1
                    run_loss += loss * n
                    run_n += n
                    tok_last += n
                    # log
                    if self.step % cfg.log_every == 0 or self.batch == n_batches:
                        now = time.monotonic()
                        tps = tok_last / max(now - t_last, 1e-9)
                        mean = run_loss / max(run_n, 1)
                        log.log("step", epoch=self.epoch, step=self.step, loss=mean,
                                ppl=perplexity(mean), lr=self.opt.lr, grad_norm=norm,
                                clipped=clipped, clip=cfg.clip, tokens_per_s=tps,
                                time=now - t_start)
                        bar.update(0, loss=mean, ppl=perplexity(mean), tokens_per_s=tps,
                                   grad_norm=norm)
                        t_last, tok_last = now, 0
                    bar.update(1)
                bar.close()
                self.elapsed = time.monotonic() - t_start
                train_loss = run_loss / run_n if run_n else None
                # evaluate
                if self.batch >= n_batches:
                    self.epoch += 1
                    self.batch = 0
                    ended = self.epoch - 1
                else:
                    ended = self.epoch  # stopped inside this epoch
                summary = self._end_epoch(log, ended, train_loss, partial=stop_reason == "time")
                if summary.get("stop"):
                    stop_reason = summary["stop"]
        except KeyboardInterrupt:
            self.elapsed = time.monotonic() - t_start
            self._save("last", with_state=True)
            log.log("interrupted", epoch=self.epoch, step=self.step)
            log.close()
            raise
        log.log("end", reason=stop_reason or "epochs", epoch=self.epoch, step=self.step,
                time=self.elapsed)
        log.close()
        self._plot()
        summary["reason"] = stop_reason or "epochs"
        summary["out"] = str(self.out)
        return summary

    def _end_epoch(self, log: MetricsLog, epoch: int, train_loss, partial: bool) -> dict:
        name, mode = self.task.metric
        figures = self.task.evaluate("valid") or {}
        record = {"epoch": epoch, "step": self.step, "time": self.elapsed, "lr": self.opt.lr,
                  "clip_count": self.clip_count, "partial": partial}
        if train_loss is not None:
            record["train_loss"] = train_loss
            record["train_ppl"] = perplexity(train_loss)
        record.update({f"valid_{k}": v for k, v in figures.items()})
        self.clip_count = 0
        improved = False
        value = figures.get(name)
        if value is not None:
            better = (self.best is None or (value < self.best if mode == "min"
                                            else value > self.best))
            if better:
                self.best, improved, self.bad_epochs = float(value), True, 0
            elif not partial:
                self.bad_epochs += 1
            if self.plateau is not None and not partial:
                self.plateau.step(value if mode == "min" else -value, self.opt)
        if improved or not (self.out / "best").exists():
            self._save("best", with_state=False)
        self._save("last", with_state=True)
        record["best"] = self.best
        log.log("epoch", **record)
        parts = [f"epoch {epoch}" + (" (stopped early)" if partial else "")]
        if train_loss is not None:
            parts.append(f"train loss {train_loss:.4f}")
        parts += [f"valid {k} {v:.4f}" for k, v in figures.items()
                  if isinstance(v, (int, float))]
        self.echo(" | ".join(parts))
        stop = None
        if self.cfg.patience and self.bad_epochs >= self.cfg.patience:
            stop = "early-stopping"
        return {**record, "stop": stop}

    def _plot(self) -> None:
        try:
            from ..plotting import plot_training
            from ..runlog import read_metrics
        except ImportError:  # matplotlib missing: the log still has everything
            return
        try:
            plot_training(read_metrics(self.out / "metrics.jsonl"), self.out / "training.png")
        except ImportError:
            pass
