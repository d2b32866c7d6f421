"""The one place that maps a cell name and its options to a sequence layer class.

``make_layer("lstm", 32, 64, 2, proj_size=16)`` is a :class:`~rnnkit.nn.lstmp.LSTMP`;
``make_layer("gru", 32, 64, layer_norm=True)`` a
:class:`~rnnkit.nn.layernorm_rnn.LayerNormGRU`; ``"mingru"`` and
``"minlstm"`` the parallel-scan cells.  Every class has the API of
:class:`~rnnkit.nn.recurrent.Recurrent` (batch-first ``forward``, ``backward``, ``step``,
``initial_state``, ``output_size``).  :func:`~rnnkit.nn.recurrent.make_recurrent` stays the
constructor of the three plain cells.

>>> make_layer("lstm", 3, 8, proj_size=4, rng=0).output_size
4
"""

from __future__ import annotations

from ..errors import ConfigError
from .layernorm_rnn import LayerNormGRU, LayerNormLSTM
from .lstmp import LSTMP
from .minrnn import MinGRU, MinLSTM
from .recurrent import Recurrent, make_recurrent

CELLS = ("rnn", "gru", "lstm", "mingru", "minlstm")


def make_layer(cell: str, input_size: int, hidden_size: int, num_layers: int = 1, *,
               proj_size: int = 0, layer_norm: bool = False, **kwargs) -> Recurrent:
    """A sequence layer by cell name; ``proj_size > 0`` (LSTM only) makes it a projection
    LSTM, ``layer_norm`` (LSTM, GRU) a LayerNorm one.  The other keyword arguments go to the
    class."""
    if cell not in CELLS:
        raise ConfigError(f"cell must be one of {', '.join(CELLS)}, got {cell!r}")
    if layer_norm:
        if cell not in ("lstm", "gru") or proj_size:
            raise ConfigError(f"layer_norm is for the LSTM and GRU without a projection, got "
                              f"cell {cell!r}" + (f", proj_size {proj_size}" if proj_size else ""))
        klass = LayerNormLSTM if cell == "lstm" else LayerNormGRU
        return klass(input_size, hidden_size, num_layers, **kwargs)
    if proj_size:
        if cell != "lstm":
            raise ConfigError(f"proj_size is for the LSTM only, got cell {cell!r}")
        return LSTMP(input_size, hidden_size, num_layers, proj_size=proj_size, **kwargs)
    if cell in ("mingru", "minlstm"):
        klass = MinGRU if cell == "mingru" else MinLSTM
        return klass(input_size, hidden_size, num_layers, **kwargs)
    return make_recurrent(cell, input_size, hidden_size, num_layers, **kwargs)
