"""List generators behind ``tools/make_lists.py {ucf101,minikinetics,folder}``.

Each subcommand writes ``train.csv``, ``val.csv``, ``test.csv`` (``relative/path LABEL``
lines), ``classes.txt`` and ``report.tsv`` (videos left out, and why) under ``--out-dir``
(default, relative to the working directory: ``data_lists/ucf101/split{N}``,
``data_lists/minikinetics``, ``data_lists/folder``, the folders the configs read). UCF101 and
Mini-Kinetics read the split and id files shipped in the repository's ``data_lists/`` by
default, so ``--video-root`` is the one option they need (see ``data_lists/README.md``).
"""

import argparse
from typing import List, Optional

from cgnl_video.data_prep.list_makers import folder, minikinetics, ucf101
from cgnl_video.data_prep.list_makers.common import finish


def build_parser() -> argparse.ArgumentParser:
    """The ``make_lists`` parser, one subcommand per dataset."""
    parser = argparse.ArgumentParser(
        prog="make_lists.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    subparsers = parser.add_subparsers(dest="dataset", required=True, metavar="{ucf101,minikinetics,folder}")
    for module in (ucf101, minikinetics, folder):
        module.add_parser(subparsers)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Parses ``argv`` and writes the lists; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        finish(args)
    except (OSError, ValueError) as e:  # bad inputs: the message names the file (and line) at fault
        parser.exit(2, f"make_lists {args.dataset}: error: {e}\n")
    return 0
