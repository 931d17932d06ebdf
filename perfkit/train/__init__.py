"""perfkit.train: the training comparison (CIFAR-10 / ImageFolder, time per epoch, best accuracy)."""

from perfkit.train.loop import TrainConfig, TrainResult, train_models, train_one

__all__ = ["TrainConfig", "TrainResult", "train_models", "train_one"]
