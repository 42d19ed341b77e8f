"""Video data: list files, clip sampling, decoding, transforms, the Dataset and its loader."""

from cgnl_video.datasets.video_dataset import build_dataset, build_loader, set_loader_epoch

__all__ = ["build_dataset", "build_loader", "set_loader_epoch"]
