"""Video data: list files, clip sampling, decoding, transforms, the Dataset and its loader.

``build_dataset``, ``build_loader`` and ``set_loader_epoch`` are imported on first use, so that
the light modules of this package (lists, video files) can be used without loading torch.
"""

_LAZY = ("build_dataset", "build_loader", "set_loader_epoch")

__all__ = list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        from cgnl_video.datasets import video_dataset

        return getattr(video_dataset, name)
    raise AttributeError(f"module 'cgnl_video.datasets' has no attribute {name!r}")
