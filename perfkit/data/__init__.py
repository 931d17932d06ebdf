"""perfkit.data: labelled image sets (ImageNet-val layouts, ImageFolders of your classes), CIFAR,
calibration sets and the decode-once tensor cache. ``open_dataset`` opens what ``--data`` names."""

from perfkit.data.imagefolder import open_dataset

__all__ = ["open_dataset"]
