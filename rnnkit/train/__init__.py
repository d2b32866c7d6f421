"""The shared trainer and the tasks it trains."""

from .trainer import TrainConfig, Trainer

__all__ = ["TrainConfig", "Trainer"]
