"""Training: typed configs, objectives, the loop with EMA, schedules, logging and resume."""

from .config import DataConfig, OptimConfig, TrainConfig, load_config
from .trainer import Trainer, train

__all__ = ["DataConfig", "OptimConfig", "TrainConfig", "load_config", "Trainer", "train"]
