"""See inside recurrent networks: gradient flow through time, recurrent weight spectra, gate
saturation, gradient clipping and per-unit activations (``rnnkit inspect ...``;
``docs/inspect.md``).  Needs NumPy only; matplotlib is imported by the plotting functions."""

from .clipping import clipping_report, format_clipping, plot_clipping
from .gates import GateMonitor, GateStats, format_gates, gate_saturation
from .gradflow import (
    GradientFlow,
    compare_cells,
    format_table,
    gradient_flow,
    model_gradient_flow,
    recording,
)
from .models import recurrent_layers
from .spectrum import BlockSpectrum, format_spectrum, recurrent_spectrum, spectrum_record
from .viewer import activation_page

__all__ = [
    "BlockSpectrum", "GateMonitor", "GateStats", "GradientFlow", "activation_page",
    "clipping_report", "compare_cells", "format_clipping", "format_gates", "format_spectrum",
    "format_table", "gate_saturation", "gradient_flow", "model_gradient_flow",
    "plot_clipping", "recording", "recurrent_layers", "recurrent_spectrum",
    "spectrum_record",
]
