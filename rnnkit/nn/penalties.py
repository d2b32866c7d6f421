"""Activation regularisation (AR) and temporal activation regularisation (TAR) of a sequence of
hidden outputs ``h`` (B, T, H) (Merity, McCann & Socher 2017; used by AWD-LSTM)::

    AR(h)  = alpha * mean(h ** 2)                          over all B*T*H entries
    TAR(h) = beta * mean((h[:, 1:] - h[:, :-1]) ** 2)      over all B*(T-1)*H differences

Gradients (docs/derivations.md#activation-regularisation)::

    dAR/dh  = 2 alpha h / (B T H)
    dTAR/dh[:, t] = 2 beta (delta_{t-1} - delta_t) / (B (T-1) H),  delta_t = h[:, t+1] - h[:, t]
                     (delta_{-1} = delta_{T-1} = 0)

AWD-LSTM applies AR to the last layer's output after its dropout and TAR to it before, so that
AR does not penalise what dropout has already zeroed and TAR compares the undropped
trajectory; :class:`rnnkit.tasks.lm.model.LanguageModel` does the same.

>>> h = np.array([[[1.0], [3.0]]])       # B = 1, T = 2, H = 1
>>> activation_penalty(h, 0.5)[0]        # 0.5 * (1 + 9) / 2
2.5
>>> temporal_penalty(h, 1.0)[0]          # (3 - 1)^2 / 1
4.0
"""

from __future__ import annotations

import numpy as np


def activation_penalty(h: np.ndarray, alpha: float) -> tuple[float, np.ndarray]:
    """``(alpha * mean(h^2), gradient w.r.t. h)``."""
    value = alpha * float(np.mean(np.square(h, dtype=np.float64)))
    return value, h * (2.0 * alpha / h.size)


def temporal_penalty(h: np.ndarray, beta: float) -> tuple[float, np.ndarray]:
    """``(beta * mean((h_{t+1} - h_t)^2) over the time axis 1, gradient w.r.t. h)``; zero for a
    single step."""
    dh = np.zeros_like(h)
    if h.shape[1] < 2:
        return 0.0, dh
    delta = h[:, 1:] - h[:, :-1]  # (B, T-1, H)
    value = beta * float(np.mean(np.square(delta, dtype=np.float64)))
    delta *= 2.0 * beta / delta.size
    dh[:, 1:] += delta
    dh[:, :-1] -= delta
    return value, dh
