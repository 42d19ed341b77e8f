"""What a user hands to prediction: video files, folders of videos, or list files.

- a folder: every video file below it (``VIDEO_EXTENSIONS`` in any case, hidden files skipped), sorted;
- a ``.txt`` / ``.csv`` / ``.lst`` file: one video per line (blank lines skipped); a line of our
  list format (``path LABEL``) gives its path; relative paths are taken from the list's folder;
- anything else: a video file (failures are reported per video, never stopping the batch).
"""

import os
from typing import Iterable, List

from cgnl_video.datasets.video_io import is_video_name

LIST_EXTENSIONS = (".txt", ".csv", ".lst")


def _folder_videos(folder: str) -> List[str]:
    found = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [os.path.join(root, n) for n in sorted(names)
                  if not n.startswith(".") and is_video_name(n)]
    return found


def _list_videos(path: str) -> List[str]:
    folder, videos = os.path.dirname(os.path.abspath(path)), []
    with open(path, encoding="utf-8-sig") as handle:
        for line in handle:
            line = line.strip()
            if not line:
                continue
            head, _, last = line.rpartition(" ")
            entry = head if head and last.lstrip("-").isdigit() else line
            videos.append(os.path.join(folder, entry))
    return videos


def is_input(item: str) -> bool:
    """Whether a command-line ``item`` names a video, folder or list (an existing path, or a
    video / list file name in any case) rather than a config key: ``GOPR0001.MP4`` is a video."""
    return os.path.exists(item) or is_video_name(item) or item.lower().endswith(LIST_EXTENSIONS)


def expand_inputs(items: Iterable[str]) -> List[str]:
    """Video paths of ``items`` (files, folders, list files), in order."""
    videos = []
    for item in items:
        if os.path.isdir(item):
            videos += _folder_videos(item)
        elif item.lower().endswith(LIST_EXTENSIONS) and os.path.isfile(item):
            videos += _list_videos(item)
        else:
            videos.append(item)
    return videos
