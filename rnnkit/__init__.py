"""rnnkit: recurrent neural networks in NumPy with hand-written backpropagation through time."""

__version__ = "0.1.0"
