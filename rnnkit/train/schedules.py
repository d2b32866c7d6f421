"""Learning-rate schedules: a stateless step decay, an annealing over the whole run (cosine or
linear, with a warm-up), and a plateau rule, each setting the live ``lr`` of an optimiser from
:mod:`rnnkit.train.optim`.

Where they sit in the training loop (as :class:`rnnkit.train.Trainer` runs them)::

    schedule.apply(opt, epoch)              # StepDecay: before the epoch's first step
    opt.lr = anneal.lr_at(progress)         # Anneal: before every step
    ...                                     # the epoch's steps
    plateau.step(val_loss, opt)             # ReduceOnPlateau: after evaluating
"""

from __future__ import annotations

import math

from ..checks import check_int, check_real
from ..errors import CheckpointError
from .optim import SGD, Adam

__all__ = ["Anneal", "ReduceOnPlateau", "StepDecay", "warmup_factor"]


class StepDecay:
    """Exponential decay after a warm period: lr(e) = base_lr · factor^max(0, e − start_epoch).

    Epochs count from 1.  With ``start_epoch=4, factor=0.5`` epochs 1-4 use base_lr, epoch 5
    base_lr/2, epoch 6 base_lr/4, ...  Stateless: the epoch alone decides the rate, so a
    resumed run needs nothing saved.

    >>> s = StepDecay(1.0, factor=0.5, start_epoch=4)
    >>> [s.lr_for_epoch(e) for e in range(1, 7)]
    [1.0, 1.0, 1.0, 1.0, 0.5, 0.25]
    """

    def __init__(self, base_lr: float, factor: float = 0.5, start_epoch: int = 1) -> None:
        o = "StepDecay"
        self.base_lr = check_real(o, "base_lr", base_lr)
        self.factor = check_real(o, "factor", factor, 0.0, 1.0, lo_open=True, hi_open=False)
        self.start_epoch = check_int(o, "start_epoch", start_epoch)

    def lr_for_epoch(self, epoch: int) -> float:
        epoch = check_int("StepDecay", "epoch", epoch, lo=1)
        return self.base_lr * self.factor ** max(0, epoch - self.start_epoch)

    def apply(self, optimizer: SGD | Adam, epoch: int) -> float:
        """Set ``optimizer.lr`` for ``epoch`` and return it."""
        optimizer.lr = lr = self.lr_for_epoch(epoch)
        return lr

    def __repr__(self) -> str:
        return (
            f"StepDecay(base_lr={self.base_lr!r}, factor={self.factor!r}, "
            f"start_epoch={self.start_epoch!r})"
        )


class Anneal:
    """The learning rate over the whole run: a cosine or linear decay from ``base_lr`` to
    ``min_lr`` as the run's progress p goes from 0 to 1.

    * ``"cosine"``: lr(p) = min_lr + (base_lr − min_lr) · (1 + cos(π·p)) / 2, the curve of
      ``torch.optim.lr_scheduler.CosineAnnealingLR`` taken once over the run;
    * ``"linear"``: lr(p) = min_lr + (base_lr − min_lr) · (1 − p).

    p is what the trainer says: the larger of the fractions of the epochs, of ``max_steps``
    and of the time budget used, so a run that ends by its budget anneals to ``min_lr`` at its
    end.  Stateless: p alone decides the rate.

    >>> a = Anneal(1.0, "cosine", min_lr=0.1)
    >>> [round(a.lr_at(p), 3) for p in (0.0, 0.5, 1.0, 2.0)]
    [1.0, 0.55, 0.1, 0.1]
    >>> Anneal(1.0, "linear").lr_at(0.25)
    0.75
    """

    SHAPES = ("cosine", "linear")

    def __init__(self, base_lr: float, shape: str = "cosine", *, min_lr: float = 0.0) -> None:
        o = "Anneal"
        self.base_lr = check_real(o, "base_lr", base_lr)
        if shape not in self.SHAPES:
            raise ValueError(f"{o}: shape must be one of {', '.join(self.SHAPES)}, got {shape!r}")
        self.shape = shape
        self.min_lr = check_real(o, "min_lr", min_lr, 0.0, self.base_lr)

    def lr_at(self, progress: float) -> float:
        """The rate at ``progress`` (clamped to [0, 1])."""
        p = min(max(float(progress), 0.0), 1.0)
        frac = 0.5 * (1.0 + math.cos(math.pi * p)) if self.shape == "cosine" else 1.0 - p
        return self.min_lr + (self.base_lr - self.min_lr) * frac

    def __repr__(self) -> str:
        return f"Anneal(base_lr={self.base_lr!r}, shape={self.shape!r}, min_lr={self.min_lr!r})"


def warmup_factor(step: int, warmup: int) -> float:
    """What a linear warm-up multiplies the rate of step ``step`` (from 0) by: (step + 1) /
    warmup for the first ``warmup`` steps, then 1 (``transformers``' warm-up).

    >>> [warmup_factor(s, 4) for s in range(5)]
    [0.25, 0.5, 0.75, 1.0, 1.0]
    """
    return (step + 1) / warmup if step < warmup else 1.0


class ReduceOnPlateau:
    """Divide the learning rate when a metric to minimise stops improving.

    The same rule as ``torch.optim.lr_scheduler.ReduceLROnPlateau(mode="min",
    threshold_mode="rel")``.  Each :meth:`step` with metric x:

    * x improves when x < best·(1 − threshold); then best ← x and the bad-epoch count resets,
      else the count goes up (a NaN metric is a bad epoch);
    * during cooldown the count is held at 0;
    * when the count exceeds ``patience``: lr ← max(lr·factor, min_lr) (changed only if that
      lowers it by more than ``eps``), then cooldown starts and the count resets.

    ``step`` returns True when it lowered the optimiser's lr.
    """

    _HYPER = ("factor", "patience", "threshold", "min_lr", "cooldown", "eps")
    _COUNTERS = ("num_bad_epochs", "cooldown_counter", "last_epoch")

    def __init__(
        self,
        factor: float = 0.1,
        patience: int = 10,
        threshold: float = 1e-4,
        min_lr: float = 0.0,
        cooldown: int = 0,
        eps: float = 1e-8,
    ) -> None:
        self._set(self._validate(factor, patience, threshold, min_lr, cooldown, eps))
        self.best = math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0
        self.last_epoch = 0

    @staticmethod
    def _validate(factor, patience, threshold, min_lr, cooldown, eps) -> dict:
        o = "ReduceOnPlateau"
        return {
            "factor": check_real(o, "factor", factor, 0.0, 1.0, lo_open=True),
            "patience": check_int(o, "patience", patience),
            "threshold": check_real(o, "threshold", threshold, 0.0, 1.0),
            "min_lr": check_real(o, "min_lr", min_lr),
            "cooldown": check_int(o, "cooldown", cooldown),
            "eps": check_real(o, "eps", eps),
        }

    def _set(self, values: dict) -> None:
        for k, v in values.items():
            setattr(self, k, v)

    def step(self, metric: float, optimizer: SGD | Adam) -> bool:
        """Record one epoch's metric; lower ``optimizer.lr`` if it has plateaued."""
        current = float(metric)
        self.last_epoch += 1
        if current < self.best * (1.0 - self.threshold):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs <= self.patience:
            return False
        self.cooldown_counter = self.cooldown
        self.num_bad_epochs = 0
        old = float(optimizer.lr)
        new = max(old * self.factor, self.min_lr)
        if old - new > self.eps:
            optimizer.lr = new
            return True
        return False

    def state_dict(self) -> dict:
        """JSON-able state (a non-finite ``best``, e.g. before the first step, as a string)."""
        out = {k: getattr(self, k) for k in self._HYPER + self._COUNTERS}
        out["best"] = self.best if math.isfinite(self.best) else str(self.best)
        return out

    def load_state_dict(self, state: dict) -> None:
        try:
            values = self._validate(**{k: state[k] for k in self._HYPER})
            counters = {k: check_int("ReduceOnPlateau", k, state[k]) for k in self._COUNTERS}
            best = float(state["best"])
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"ReduceOnPlateau: bad scheduler state: {e}") from None
        self._set(values)
        self._set(counters)
        self.best = best

    def __repr__(self) -> str:
        hyper = ", ".join(f"{k}={getattr(self, k)!r}" for k in self._HYPER)
        return f"ReduceOnPlateau({hyper})"
