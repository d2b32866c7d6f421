"""How much memory a training run needs, estimated from its options before anything is
allocated, and the check that refuses a run the machine cannot hold.

The estimate counts the parameters, their gradients, the optimiser's buffers (Adam: two per
parameter, SGD with momentum: one), the weight average (``--ema``) and the activations one
training step keeps for the backward pass.  It is a lower bound of the order of magnitude,
not an exact figure: temporaries and the data add to it.

Example::

    >>> n = recurrent_parameters("lstm", 64, 256, 2)
    >>> n
    856064
    >>> round(training_bytes(n, 4, optimizer="adam", activations=0) / 2**20, 1)
    13.1
"""

from __future__ import annotations

import os

from ..errors import ConfigError

GATES = {"rnn": 1, "gru": 3, "lstm": 4}


def recurrent_parameters(cell: str, D: int, H: int, L: int, directions: int = 1) -> int:
    """Parameters of ``L`` stacked recurrent layers (``W_x``, ``W_h``, two biases per
    direction); the input of layer ``l > 0`` is ``directions * H`` wide."""
    G = GATES.get(cell, 4)
    n, width = 0, D
    for _ in range(L):
        n += directions * (width * G * H + H * G * H + 2 * G * H)
        width = directions * H
    return n


def training_bytes(n_params: int, itemsize: int, *, optimizer: str = "adam",
                   momentum: float = 0.0, ema: bool = False, activations: int = 0) -> int:
    """Bytes for parameters, gradients, optimiser state, weight average and ``activations``
    numbers kept by one step."""
    copies = 2 + (2 if optimizer in ("adam", "adamw") else 1 if momentum else 0) + int(ema)
    return int(itemsize) * (copies * int(n_params) + int(activations))


def available_bytes() -> int | None:
    """Memory the system can give without swapping: ``MemAvailable`` of ``/proc/meminfo``,
    else free physical pages (``os.sysconf``); None where neither is known."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def _gib(n: float) -> str:
    return f"{n / 2**30:.3g} GiB"


def check_memory(what: str, need: float, *, ignore: bool = False,
                 available: int | None = None) -> None:
    """Raise :class:`ConfigError` when ``need`` bytes exceed the available memory, unless
    ``ignore`` (``--ignore-memory-check``).  ``what`` names the model ("the options",
    a checkpoint path)."""
    if ignore:
        return
    available = available_bytes() if available is None else available
    if available is None or need <= available:
        return
    raise ConfigError(
        f"{what}: training needs about {_gib(need)} (parameters, gradients, optimiser state and "
        f"one step's activations) but only {_gib(available)} of memory is available; choose a "
        "smaller model (--hidden, --embed, --layers, vocabulary) or batch, or pass "
        "--ignore-memory-check to try anyway")


def config_training_bytes(cfg, optimizer: str, momentum: float, ema: bool, batch_size: int,
                          T: int = 100) -> int:
    """About how many bytes training the model of ``cfg`` takes, for the sequence models
    (classifier, tagger, seq2seq), read from the usual config fields (``vocab_size`` or
    ``src_vocab_size``, ``embed_size``, ``hidden_size``, ``num_layers``, ``bidirectional``,
    ``cell``, and ``num_classes``, ``num_tags`` or ``tgt_vocab_size``) with sequences of
    ``T`` steps."""
    V = getattr(cfg, "vocab_size", None) or getattr(cfg, "src_vocab_size", 1)
    E, H = cfg.embed_size, cfg.hidden_size
    L, cell = getattr(cfg, "num_layers", 1), getattr(cfg, "cell", "lstm")
    dirs = 2 if getattr(cfg, "bidirectional", False) else 1
    n = V * E + recurrent_parameters(cell, E, H, L, dirs)
    per_token = E + L * dirs * (GATES.get(cell, 4) + 2) * H
    out = getattr(cfg, "num_classes", None) or getattr(cfg, "num_tags", None)
    if out is not None:
        n += dirs * H * out + out
        per_token += 3 * out
    Vt = getattr(cfg, "tgt_vocab_size", None)
    if Vt is not None:  # a decoder: embedding, one recurrent stack, output layer
        Hd = getattr(cfg, "decoder_hidden_size", None) or H
        n += Vt * E + recurrent_parameters(cell, E + dirs * H, Hd, L) + 2 * Hd * Vt
        per_token += L * (GATES.get(cell, 4) + 2) * Hd + 3 * Vt
    itemsize = 8 if str(getattr(cfg, "dtype", "float32")) == "float64" else 4
    return training_bytes(n, itemsize, optimizer=optimizer, momentum=momentum, ema=ema,
                          activations=batch_size * T * per_token)
