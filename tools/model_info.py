#!/usr/bin/env python3
"""Prints a model's parameters and GFLOPs (fvcore) with a per-stage table.

    python tools/model_info.py --cfg configs/MiniKinetics/I3D_8x8_R50_CGNL1.yaml [KEY VALUE ...]
    python tools/model_info.py --summary configs/MiniKinetics [KEY VALUE ...]
"""

import glob
import os
import sys

from cgnl_video.config import load_config
from cgnl_video.config.cli import config_from_args, default_parser, run_tool


def main():
    parser = default_parser(__doc__.strip().splitlines()[0])
    parser.add_argument("--summary", metavar="DIR",
                        help="instead, one Markdown row per YAML config in DIR")
    args = parser.parse_args()
    from cgnl_video.models.report import SUMMARY_HEADER, stage_report, summary_row

    if not args.summary:
        print(stage_report(config_from_args(args)))
        return
    paths = sorted(glob.glob(os.path.join(args.summary, "*.yaml")))
    if not paths:
        sys.exit(f"{args.summary}: no .yaml config files")
    configs = [(path, load_config(path, args.opts)) for path in paths]
    print("\n".join(SUMMARY_HEADER))
    for path, cfg in configs:
        print(summary_row(os.path.splitext(os.path.basename(path))[0], cfg))


if __name__ == "__main__":
    run_tool(main)
