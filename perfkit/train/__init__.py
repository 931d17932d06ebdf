"""The training comparison (CIFAR-10 / ImageFolder): ``train`` yields one result per epoch."""

from perfkit.train.loop import EpochResult, TrainConfig, resume_run_id, train

__all__ = ["EpochResult", "TrainConfig", "resume_run_id", "train"]
