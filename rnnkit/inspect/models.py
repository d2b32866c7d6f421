"""The recurrent layers inside any model, and how the inspectors run them.

The inspectors work on the recurrent layers found inside a model (:func:`recurrent_layers`
walks ``model.named_modules()``), so they serve every model type.  What depends on the task
(loading a checkpoint, running a batch, a loss with its backward pass) comes from
:func:`rnnkit.tasks.load_model`; a model without those is *probed*: each recurrent layer runs
alone on random N(0, 1) inputs (:func:`probe_inputs`).
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np

from ..nn.module import Module
from ..nn.recurrent import Recurrent


def recurrent_layers(model: Module) -> list[tuple[str, Recurrent]]:
    """Every :class:`~rnnkit.nn.recurrent.Recurrent` inside ``model`` (or ``model`` itself), with
    its dotted module name (``"rnn"``, ``"encoder.rnn"``, ...); nested stacks are not descended."""
    if isinstance(model, Recurrent):
        return [(model.cell, model)]
    out = []
    for name, mod in model.named_modules():
        if isinstance(mod, Recurrent) and not any(name.startswith(n + ".") for n, _ in out):
            out.append((name, mod))
    return out


def probe_inputs(layer: Recurrent, B: int, T: int, rng: np.random.Generator) -> np.ndarray:
    """Random N(0, 1) inputs (B, T, D) for a layer probed on its own."""
    return rng.standard_normal((B, T, layer.cfg.input_size)).astype(layer.np_dtype)


class _Capture:
    def __init__(self, name: str, found: list) -> None:
        self.name, self.found = name, found

    def forward(self, layer, cache) -> None:
        self.found.append((self.name, layer, cache))


@contextmanager
def capture_forward(model):
    """Inside the block, every forward pass of a recurrent layer inside ``model`` appends
    ``(name, layer, cache)`` to the yielded list (a forward hook on each layer, removed on
    exit; :meth:`rnnkit.nn.recurrent.Recurrent.add_hook`)."""
    found: list = []
    handles = [layer.add_hook(_Capture(name, found)) for name, layer in recurrent_layers(model)]
    try:
        yield found
    finally:
        for h in handles:
            h.remove()
