"""Human-readable model summaries: params, GFLOPs and a per-stage table (Markdown)."""

from fvcore.common.config import CfgNode

from cgnl_video.models.build import build_model
from cgnl_video.models.complexity import block_table, count_gflops, count_params
from cgnl_video.models.resnet3d import BLOCK_NAMES


def view_shapes(cfg: CfgNode):
    """(C, T, H, W) of a training crop and of a test view."""
    frames = cfg.DATA.NUM_FRAMES
    return (
        (3, frames, cfg.DATA.TRAIN_CROP_SIZE, cfg.DATA.TRAIN_CROP_SIZE),
        (3, frames, cfg.DATA.TEST_CROP_SIZE, cfg.DATA.TEST_CROP_SIZE),
    )


def _shape_text(shape) -> str:
    return "x".join(map(str, shape[1:]))


def summary_row(name: str, cfg: CfgNode) -> str:
    """One Markdown row: name, params (M), GFLOPs of a train crop and of a test view."""
    model = build_model(cfg)
    train, test = view_shapes(cfg)
    return (
        f"| {name} | {count_params(model) / 1e6:.2f} | {_shape_text(train)} | "
        f"{count_gflops(model, train):.1f} | {_shape_text(test)} | {count_gflops(model, test):.1f} |"
    )


SUMMARY_HEADER = (
    "| config | params (M) | train crop (T x H x W) | GFLOPs | test view | GFLOPs |",
    "|---|---:|---|---:|---|---:|",
)


def stage_report(cfg: CfgNode) -> str:
    """The per-stage table of ``cfg``'s model at its test view, with totals."""
    model = build_model(cfg)
    shape = view_shapes(cfg)[1]
    lines = [
        f"input {'x'.join(map(str, shape))} (C x T x H x W), fvcore counts, 1 multiply-add = 1 flop",
        "| stage | output (C x T x H x W) | params (M) | GFLOPs |",
        "|---|---|---:|---:|",
    ]
    rows = block_table(model, shape, BLOCK_NAMES)
    for row in rows:
        output = " x ".join(map(str, row["output"]))
        lines.append(f"| {row['name']} | {output} | {row['params_m']:.2f} | {row['gflops']:.2f} |")
    total_gflops = sum(row["gflops"] for row in rows)
    lines.append(f"| **total** | | {count_params(model) / 1e6:.2f} | {total_gflops:.2f} |")
    return "\n".join(lines)
