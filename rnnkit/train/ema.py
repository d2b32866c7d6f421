"""Weight averaging: an exponential moving average of the parameters kept beside training
(``--ema``), swapped into the model for validation and saved as ``best/``."""

from __future__ import annotations

import numpy as np

from ..checks import check_int, check_real

__all__ = ["WeightAverage"]


class WeightAverage:
    """Exponential moving average of the parameters (Polyak averaging), updated after every
    optimiser step: ``avg <- d avg + (1 - d) w`` with ``d = min(decay, (1 + n) / (10 + n))``
    after ``n`` updates, so early averages are not dominated by the initial weights (the
    warm-up of TensorFlow's ``ExponentialMovingAverage``).  ``swapped()`` puts the averages
    into the live parameter arrays for a while (for validation) and restores the raw weights.

    >>> import numpy as np
    >>> w = {"a": np.array([0.0])}
    >>> ema = WeightAverage(w, decay=0.9)
    >>> w["a"] += 1.0; ema.update()          # after an optimiser step: d = min(0.9, 1/10)
    >>> ema.avg["a"]
    array([0.9])
    >>> with ema.swapped():
    ...     print(w["a"])
    [0.9]
    >>> w["a"]
    array([1.])
    """

    def __init__(self, params: dict[str, np.ndarray], decay: float) -> None:
        self.params = params
        self.decay = check_real("WeightAverage", "decay", decay, 0.0, 1.0, lo_open=True)
        self.avg = {k: v.copy() for k, v in params.items()}
        self.updates = 0

    def update(self) -> None:
        n = self.updates
        d = min(self.decay, (1.0 + n) / (10.0 + n))
        for k, w in self.params.items():
            a = self.avg[k]
            a *= d
            a += (1.0 - d) * w
        self.updates = n + 1

    def load(self, arrays: dict[str, np.ndarray], updates: int) -> None:
        if set(arrays) != set(self.avg):
            raise ValueError("WeightAverage: the averaged weights do not match the model's "
                             "parameters")
        updates = check_int("WeightAverage", "updates", updates)
        for k, v in arrays.items():
            np.copyto(self.avg[k], v)
        self.updates = updates

    def swapped(self) -> _Swapped:
        """A context in which the live parameter arrays hold the averages."""
        return _Swapped(self)


class _Swapped:
    def __init__(self, ema: WeightAverage):
        self.ema, self.saved = ema, None

    def __enter__(self):
        self.saved = {k: w.copy() for k, w in self.ema.params.items()}
        for k, w in self.ema.params.items():
            np.copyto(w, self.ema.avg[k])
        return self

    def __exit__(self, *exc):
        for k, w in self.ema.params.items():
            np.copyto(w, self.saved[k])
        self.saved = None
        return False
