"""In-place activations and the one helper that knows the gate order of each cell.

``sigmoid(x) = 0.5 * tanh(x / 2) + 0.5`` exactly; the cells use it to turn the sigmoid gates and
the tanh candidate of a whole (B, G*H) block into a single ``tanh`` call: the pre-activations of
sigmoid gates are halved once (the input projection for the whole sequence, and a halved copy of
the recurrent weights), then ``tanh`` runs over the block and an affine map fixes the sigmoid
columns.  Halving is exact in binary floating point, so the result equals the textbook form.
"""

from __future__ import annotations

import numpy as np

# Gate order inside packed weights, as in PyTorch.  Nothing else in rnnkit spells these out.
GATES = {"rnn": ("h",), "gru": ("r", "z", "n"), "lstm": ("i", "f", "g", "o")}
SIGMOID_GATES = {"rnn": (), "gru": ("r", "z"), "lstm": ("i", "f", "o")}


def num_gates(cell: str) -> int:
    return len(GATES[cell])


def gate_slice(cell: str, gate: str, H: int) -> slice:
    k = GATES[cell].index(gate)
    return slice(k * H, (k + 1) * H)


def gate_scales(cell: str, H: int, dtype) -> tuple[np.ndarray, np.ndarray]:
    """Per-column (pre, post) factors: pre = 0.5 on sigmoid gates and 1 on tanh ones;
    after tanh, ``y * pre + (1 - pre)`` ... written as (scale, shift) = (pre, sigmoid ? 0.5 : 0)."""
    pre = np.ones(num_gates(cell) * H, dtype=dtype)
    shift = np.zeros(num_gates(cell) * H, dtype=dtype)
    for g in SIGMOID_GATES[cell]:
        pre[gate_slice(cell, g, H)] = 0.5
        shift[gate_slice(cell, g, H)] = 0.5
    return pre, shift


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Numerically stable sigmoid (not in place), for occasional use outside the hot loops."""
    return 0.5 * np.tanh(0.5 * x) + 0.5


def sigmoid_(x: np.ndarray) -> np.ndarray:
    """In-place sigmoid via tanh: never overflows."""
    x *= 0.5
    np.tanh(x, out=x)
    x *= 0.5
    x += 0.5
    return x
