#!/usr/bin/env python3
"""Export a model: ``python tools/export.py --cfg FILE --format onnx|torchscript --out FILE [KEY VALUE ...]``.

``--checkpoint`` defaults to ``TEST.CHECKPOINT_FILE_PATH``, else the newest checkpoint in
``OUTPUT_DIR``. The file maps float32 normalised clips ``B x 3 x T x H x W`` (any B) to
``B x NUM_CLASSES`` logits; see ``cgnl_video/inference/export.py``.
"""

from cgnl_video.config.cli import config_from_args, default_parser, run_tool
from cgnl_video.inference.arguments import check_output_file


def main():
    parser = default_parser(__doc__.strip().splitlines()[0])
    parser.add_argument("--format", dest="fmt", required=True, help="onnx or torchscript")
    parser.add_argument("--out", required=True, help="the file to write")
    parser.add_argument("--checkpoint", help="weights to export (default: the newest of OUTPUT_DIR)")
    args = parser.parse_args()
    check_output_file(args.out, "--out")
    cfg = config_from_args(args)  # a bad setting stops here, before torch is imported
    from cgnl_video.inference.export import export_from_config

    checkpoint = export_from_config(cfg, args.fmt, args.out, args.checkpoint)
    print(f"wrote {args.out} ({args.fmt}) from {checkpoint}")


if __name__ == "__main__":
    run_tool(main)
