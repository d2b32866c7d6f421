"""Feed-forward layers used around the recurrent stacks."""

from .dropout import Dropout
from .embedding import Embedding
from .linear import Linear

__all__ = ["Dropout", "Embedding", "Linear"]
