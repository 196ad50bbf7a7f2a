"""Training: typed configs, objectives, the loop with EMA, schedules, logging and resume;
denoising pretraining and fine-tuning with auxiliary denoising."""

from .config import DataConfig, DenoiseConfig, OptimConfig, PretrainConfig, TrainConfig, load_config
from .pretrain import Pretrainer, pretrain
from .trainer import Trainer, train

__all__ = ["DataConfig", "DenoiseConfig", "OptimConfig", "PretrainConfig", "TrainConfig", "load_config",
           "Pretrainer", "pretrain", "Trainer", "train"]
