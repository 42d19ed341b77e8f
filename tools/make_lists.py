#!/usr/bin/env python3
"""Writes train/val/test list files and classes.txt for UCF101, Mini-Kinetics-200 or any
``<class>/<video>`` folder; ``tools/make_lists.py {ucf101,minikinetics,folder} --help``.

Run from the repository root: ``python tools/make_lists.py ucf101 --video-root ROOT --split N``
and ``python tools/make_lists.py minikinetics --video-root ROOT`` read the files shipped in
``data_lists/`` and write the folders the configs read (``data_lists/README.md``)."""

import sys

from cgnl_video.data_prep.list_makers import main

if __name__ == "__main__":
    sys.exit(main())
