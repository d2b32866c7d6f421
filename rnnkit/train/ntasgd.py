"""NT-ASGD: non-monotonically triggered averaged SGD (Merity, Keskar & Socher 2018).

Plain SGD until validation stops improving, then SGD whose *average* iterate is the model.
The trigger is the one of the authors' code: with the validation losses ``v_1 .. v_k`` seen so
far and a new one ``v``, averaging starts when ``k > nonmono`` and ``v > min(v_1 .. v_{k -
nonmono})`` -- no improvement on the best loss from more than ``nonmono`` checks ago.  From the
switch on, after the ``n``-th step::

    avg_n = avg_{n-1} + (w_n - avg_{n-1}) / n        = (w_1 + ... + w_n) / n

the mean of the iterates after each step since the switch (``torch.optim.ASGD`` with
``t0 = 0, lambd = 0``, as the authors use it).  The trainer validates and saves checkpoints
with the average (``swapped()``); the raw iterate goes on training.

>>> import numpy as np
>>> w = {"w": np.array([1.0])}
>>> opt = NTASGD(w, lr=0.5, nonmono=1)
>>> [opt.observe(v) for v in (2.0, 3.0, 2.5)]   # 2.5 > min(2.0): switch at the third check
[False, False, True]
>>> opt.step({"w": np.array([1.0])}); opt.step({"w": np.array([1.0])})
>>> w["w"], opt.avg["w"]                          # iterates 0.5 and 0.0; their mean
(array([0.]), array([0.25]))
"""

from __future__ import annotations

import numpy as np

from ..checks import check_int
from ..errors import CheckpointError
from .ema import _Swapped
from .optim import SGD

__all__ = ["NTASGD"]


class NTASGD:
    """SGD (``lr``, ``momentum``, ``weight_decay`` as :class:`~rnnkit.train.optim.SGD`) that
    switches to averaging after :meth:`observe` sees ``nonmono`` checks without improvement."""

    name = "nt-asgd"

    def __init__(self, params: dict[str, np.ndarray], lr: float, nonmono: int = 5,
                 momentum: float = 0.0, weight_decay: float = 0.0) -> None:
        self.sgd = SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
        self.params = self.sgd.params
        self.nonmono = check_int("NTASGD", "nonmono", nonmono, 1)
        self.history: list[float] = []  # validation losses before the switch
        self.switched_at: int | None = None  # step count at the switch
        self.avg: dict[str, np.ndarray] | None = None  # the running mean, from the first step
        self.n_avg = 0  # iterates in the mean

    @property
    def lr(self) -> float:
        return self.sgd.lr

    @lr.setter
    def lr(self, value: float) -> None:
        self.sgd.lr = value

    @property
    def step_count(self) -> int:
        return self.sgd.step_count

    @property
    def averaging(self) -> bool:
        return self.switched_at is not None

    def step(self, grads: dict[str, np.ndarray], *, check_finite: bool = True) -> None:
        """One SGD step, then the running mean once averaging is on."""
        self.sgd.step(grads, check_finite=check_finite)
        if not self.averaging:
            return
        self.n_avg += 1
        if self.avg is None:
            self.avg = {k: p.copy() for k, p in self.params.items()}
            return
        for k, p in self.params.items():
            a = self.avg[k]
            a += (p - a) / self.n_avg

    def observe(self, value: float) -> bool:
        """A validation loss (lower is better); True when it starts the averaging."""
        if self.averaging:
            return False
        h, n = self.history, self.nonmono
        trigger = len(h) > n and value > min(h[:-n])
        h.append(float(value))
        if trigger:
            self.switched_at = self.step_count
        return trigger

    def swapped(self) -> _Swapped:
        """A context in which the live parameters hold the average (the raw iterate before
        the first averaged step)."""
        return _Swapped(self if self.avg is not None else _Identity(self.params))

    def average(self) -> dict[str, np.ndarray]:
        """Copies of the weights the model stands for: the average, or the iterate."""
        src = self.params if self.avg is None else self.avg
        return {k: v.copy() for k, v in src.items()}

    # -- checkpoints ------------------------------------------------------------------------
    def state_dict(self) -> tuple[dict, dict[str, np.ndarray]]:
        meta, arrays = self.sgd.state_dict()
        meta = {**meta, "optimizer": self.name, "nonmono": self.nonmono,
                "history": list(self.history), "switched_at": self.switched_at,
                "n_avg": self.n_avg}
        if self.avg is not None:
            arrays.update({f"avg.{k}": v.copy() for k, v in self.avg.items()})
        return meta, arrays

    def load_state_dict(self, meta: dict, arrays: dict[str, np.ndarray]) -> None:
        if meta.get("optimizer") != self.name:
            raise CheckpointError(f"NTASGD: checkpoint holds optimiser state of kind "
                                  f"{meta.get('optimizer')!r}, expected 'nt-asgd'")
        try:
            history = [float(v) for v in meta["history"]]
            switched_at, n_avg = meta["switched_at"], int(meta["n_avg"])
            nonmono = check_int("NTASGD", "nonmono", meta["nonmono"], 1)
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"NTASGD: bad optimiser state: {e}") from None
        avg = {k[4:]: v for k, v in arrays.items() if k.startswith("avg.")}
        if n_avg and set(avg) != set(self.params):
            raise CheckpointError("NTASGD: the averaged weights do not match the parameters")
        self.sgd.load_state_dict({**meta, "optimizer": "sgd"},
                                 {k: v for k, v in arrays.items() if not k.startswith("avg.")})
        self.nonmono, self.history, self.switched_at, self.n_avg = (
            nonmono, history, switched_at, n_avg)
        self.avg = {k: np.array(v, dtype=self.params[k].dtype) for k, v in avg.items()} \
            if n_avg else None

    def __repr__(self) -> str:
        return (f"NTASGD({len(self.params)} params, lr={self.lr!r}, nonmono={self.nonmono}, "
                f"averaging={self.averaging})")


class _Identity:
    """``params`` and ``avg`` the same arrays: swapping changes nothing."""

    def __init__(self, params):
        self.params = self.avg = params
