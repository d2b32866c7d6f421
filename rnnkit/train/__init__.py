"""Task-agnostic training: the trainer and its Task protocol, optimisers and schedules,
checkpoints, the metrics log, plots, and the options every training command shares."""

from .trainer import Task, TrainConfig, Trainer

__all__ = ["Task", "TrainConfig", "Trainer"]
