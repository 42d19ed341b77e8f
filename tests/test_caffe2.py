"""Caffe2 weights of the non-local reference / PySlowFast's model zoo: read safely, mapped onto
our I3D, through the loaders and the real tools.

The files are built here from the reference's own naming and shape rules, written out
independently of ``cgnl_video.models.caffe2`` (facebookresearch/video-nonlocal-net:
``resnet_video.py`` / ``resnet_video_org.py`` ``obtain_arc`` for the i3d temporal kernels,
``resnet_helper.py`` for the block names and the shortcut rule, ``nonlocal_helper.py`` for the
non-local blobs, ``checkpoints.py`` for the file layout with its momentum, ``lr`` and
``model_iter`` entries).
"""

import logging
import os
import pickle
import re
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_tool, tiny_opts

from cgnl_video.config import load_config
from cgnl_video.engine import checkpoint as ckpt
from cgnl_video.errors import ConfigError
from cgnl_video.models import CGNLBlock, NonLocalBlock, build_model
from cgnl_video.models.caffe2 import Caffe2Error

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs" / "MiniKinetics"
WIDTH = 2  # RESNET.WIDTH_PER_GROUP: every width scales with it, as the reference's dim_inner

# resnet_video_org.py BLOCK_CONFIG and obtain_arc (i3d arcs 2 and 4): use_temp_convs per block.
BLOCK_CONFIG = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
USE_TEMP_CONVS = {
    50: ([1, 1, 1], [1, 0, 1, 0], [1, 0, 1, 0, 1, 0], [0, 1, 0]),
    101: ([1, 1, 1], [1, 0, 1, 0], [1 if i % 2 == 0 else 0 for i in range(23)], [0, 1, 0]),
}


def reference_blobs(depth, nonlocal_after, num_classes=400, width=WIDTH, seed=0):
    """The blobs ``save_model_params`` writes for the reference's i3d ResNet ``depth`` with
    non-local blocks after the residual blocks ``nonlocal_after[stage]`` (stage 2..5)."""
    rng = np.random.default_rng(seed)
    blobs = {}

    def param(name, shape, kind="w"):
        value = {"w": lambda: rng.normal(0, 0.2, shape), "s": lambda: rng.uniform(0.5, 1.5, shape),
                 "riv": lambda: rng.uniform(0.5, 1.5, shape)}.get(kind, lambda: rng.normal(0, 0.1, shape))()
        blobs[name] = value.astype(np.float32)
        if kind not in ("rm", "riv"):  # computed params have no momentum
            blobs[name + "_momentum"] = np.zeros(shape, np.float32)

    def conv_bn(prefix, bn_prefix, shape):  # model.Conv3dBN / ConvNd + SpatialBN
        param(prefix + "_w", shape)
        for suffix in ("s", "b", "rm", "riv"):
            param(f"{bn_prefix}_bn_{suffix}", (shape[0],), suffix)

    dim_in = width  # conv1: 3 -> 64 in the reference (64 = WIDTH_PER_GROUP there)
    conv_bn("conv1", "res_conv1", (dim_in, 3, 5, 7, 7))  # use_temp_convs_1 = [2]: kernel 5
    for stage, (blocks, temps) in enumerate(zip(BLOCK_CONFIG[depth], USE_TEMP_CONVS[depth]), start=2):
        dim_inner = width * 2 ** (stage - 2)
        dim_out = 4 * dim_inner
        for i in range(blocks):
            prefix = f"res{stage}_{i}"
            conv_bn(prefix + "_branch2a", prefix + "_branch2a", (dim_inner, dim_in, 1 + 2 * temps[i], 1, 1))
            conv_bn(prefix + "_branch2b", prefix + "_branch2b", (dim_inner, dim_inner, 1, 3, 3))
            conv_bn(prefix + "_branch2c", prefix + "_branch2c", (dim_out, dim_inner, 1, 1, 1))
            if dim_in != dim_out or (i == 0 and stage > 2):  # _add_shortcut_3d
                conv_bn(prefix + "_branch1", prefix + "_branch1", (dim_out, dim_in, 1, 1, 1))
            dim_in = dim_out
            if i in nonlocal_after.get(stage, ()):
                nl, inner = f"nonlocal_conv{stage}_{i}", dim_out // 2
                for name, shape in (("theta", (inner, dim_out)), ("phi", (inner, dim_out)),
                                    ("g", (inner, dim_out)), ("out", (dim_out, inner))):
                    param(f"{nl}_{name}_w", shape + (1, 1, 1))
                    param(f"{nl}_{name}_b", shape[:1], "b")
                for suffix in ("s", "b", "rm", "riv"):
                    param(f"{nl}_bn_{suffix}", (dim_out,), suffix)
    param("pred_w", (num_classes, dim_in))  # model.FC (train / val nets)
    param("pred_b", (num_classes,), "b")
    blobs["lr"] = np.array([0.0001], np.float32)
    blobs["model_iter"] = 400000
    return blobs


def write_pickle(path, blobs, py2=False):
    """``{"blobs": blobs}`` at protocol 2: as Python 3 writes it, or as Python 2 did."""
    with open(path, "wb") as handle:
        (Py2Pickler(handle, 2) if py2 else pickle.Pickler(handle, 2)).dump({"blobs": blobs})
    return str(path)


class Py2Pickler(pickle._Pickler):
    """Writes bytes as Python 2 str (BINSTRING) and NumPy 1's module names, as the reference's
    Python 2 ``cPickle.dump(..., HIGHEST_PROTOCOL)`` did."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_py2_str(self, obj):
        header = pickle.SHORT_BINSTRING + bytes([len(obj)]) if len(obj) < 256 else \
            pickle.BINSTRING + struct.pack("<i", len(obj))
        self.write(header + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str

    def save_global(self, obj, name=None):
        module = obj.__module__.replace("numpy._core", "numpy.core")
        self.write(pickle.GLOBAL + f"{module}\n{name or obj.__qualname__}\n".encode())
        self.memoize(obj)


# ---------------------------------------------------------------------------
# Where each blob lives in our model, found from the blob's name (the other direction)
# ---------------------------------------------------------------------------

STAGE_BLOCK = {2: 1, 3: 3, 4: 4, 5: 5}  # res{s} -> model.blocks index (stem, res2, pool, res3..)
BN = {"s": "weight", "b": "bias", "rm": "running_mean", "riv": "running_var"}


def _stage(model, stage):
    """A stage's blocks, and the positions of its residual blocks among them."""
    blocks = list(model.blocks[STAGE_BLOCK[stage]].res_blocks)
    return blocks, [n for n, b in enumerate(blocks) if not isinstance(b, (NonLocalBlock, CGNLBlock))]


def model_tensor(model, name):
    """The parameter or buffer of ``model`` that the reference's blob ``name`` is."""
    parts = re.match(r"^(.*?)_(w|b|bn_s|bn_b|bn_rm|bn_riv)$", name)
    owner, field = parts[1], parts[2]
    entry = BN[field[3:]] if field.startswith("bn_") else {"w": "weight", "b": "bias"}[field]
    if owner == "conv1":
        module = model.blocks[0].conv
    elif owner == "res_conv1":
        module = model.blocks[0].norm
    elif owner == "pred":
        module = model.blocks[6].proj
    elif owner.startswith("nonlocal_conv"):
        stage, i, *conv = re.match(r"^nonlocal_conv(\d)_(\d+)_?(theta|phi|g|out)?$", owner).groups()
        blocks, residual = _stage(model, int(stage))
        block = blocks[residual[int(i)] + 1]  # res_stage_nonlocal: right after residual block i
        module = block.bn if conv == [None] else getattr(block, {"out": "z"}.get(conv[0], conv[0]))
    else:
        stage, i, branch = re.match(r"^res(\d)_(\d+)_branch(1|2[abc])$", owner).groups()
        blocks, residual = _stage(model, int(stage))
        block = blocks[residual[int(i)]]
        if branch == "1":
            module = block.branch1_norm if field.startswith("bn_") else block.branch1_conv
        else:
            module = getattr(block.branch2, ("norm_" if field.startswith("bn_") else "conv_") + branch[1])
    return getattr(module, entry)


def weights_of(blobs):
    return {k: v for k, v in blobs.items() if not k.endswith("_momentum") and k not in ("lr", "model_iter")}


def config(name, *opts):
    return load_config(str(CONFIGS / name), ["RESNET.WIDTH_PER_GROUP", str(WIDTH), "TRAIN.AUTO_RESUME",
                                             "False", *map(str, opts)])


def assert_blobs_loaded(model, blobs, skip=()):
    """Every weight blob equals its model tensor, and every model tensor (but BN batch
    counters) was a blob's."""
    covered = set()
    for name, value in weights_of(blobs).items():
        if name in skip:
            continue
        tensor = model_tensor(model, name)
        assert torch.equal(tensor, torch.from_numpy(value).reshape(tensor.shape)), name
        covered.add(id(tensor))
    own = [t for k, t in model.state_dict(keep_vars=True).items() if not k.endswith("num_batches_tracked")]
    return sum(id(t) not in covered for t in own)


CASES = {  # config, depth, non-local blocks of the file
    "8x8 R50": ("I3D_8x8_R50.yaml", 50, {}),
    "8x8 R50 NL5 (PySlowFast I3D_NLN)": ("I3D_8x8_R50_NL5.yaml", 50, {3: (1, 3), 4: (1, 3, 5)}),
    "32x2 R50 NL1": ("I3D_32x2_R50_NL1.yaml", 50, {4: (4,)}),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("py2", [False, True], ids=["py3-protocol2", "py2-style"])
def test_every_blob_is_loaded_for_testing_and_the_forward_matches(case, py2, tmp_path):
    name, depth, nonlocal_after = CASES[case]
    blobs = reference_blobs(depth, nonlocal_after)
    path = write_pickle(tmp_path / "reference.pkl", blobs, py2=py2)
    cfg = config(name, "MODEL.NUM_CLASSES", 400)
    model = build_model(cfg).eval()
    ckpt.load_for_test(model, path)
    assert assert_blobs_loaded(model, blobs) == 0  # nothing left at its initialisation

    # The same weights put in place tensor by tensor from the blob names: same outputs.
    expected = build_model(cfg).eval()
    with torch.no_grad():
        for blob, value in weights_of(blobs).items():
            tensor = model_tensor(expected, blob)
            tensor.copy_(torch.from_numpy(value).reshape(tensor.shape))
        x = torch.randn(1, 3, 8, 32, 32)
        torch.testing.assert_close(model(x), expected(x), rtol=0, atol=0)


def test_fine_tuning_skips_the_400_way_head_and_keeps_cgnl_blocks_at_identity(tmp_path, caplog):
    """A plain R101 pickle (the reference's arc 4) into the R101 CGNL config, 200 classes."""
    blobs = reference_blobs(101, {})
    path = write_pickle(tmp_path / "i3d_r101.pkl", blobs)
    cfg = config("I3D_8x8_R101_CGNL1.yaml", "TRAIN.CHECKPOINT_FILE_PATH", path, "TRAIN.CHECKPOINT_TYPE", "caffe2")
    model = build_model(cfg)
    head = model.blocks[6].proj.weight.detach().clone()
    caplog.set_level(logging.INFO)
    assert ckpt.initialise(ckpt.TrainState(model, None, None, None), cfg, ckpt.initial_point(cfg)).startswith("initialised from")
    left = assert_blobs_loaded(model, blobs, skip=("pred_w", "pred_b"))
    cgnl = model.blocks[4].res_blocks[22]
    assert isinstance(cgnl, CGNLBlock)
    assert left == 2 + len(list(cgnl.state_dict()))  # the head and the CGNL block only
    assert torch.equal(model.blocks[6].proj.weight, head)
    assert f"pred_w (400, {32 * WIDTH}) vs model (200, {32 * WIDTH})" in caplog.text
    assert "keep their initialisation: blocks.4.res_blocks.22" in caplog.text
    assert re.search(r"\d+ training-state blobs \(\*_momentum, lr, model_iter\) ignored", caplog.text)
    x = torch.randn(1, 16 * WIDTH, 2, 3, 3)
    with torch.no_grad():
        torch.testing.assert_close(cgnl.eval()(x), x)  # still the identity


def test_a_forbidden_global_is_refused_without_running(tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    path = tmp_path / "evil.pkl"
    with open(path, "wb") as handle:
        pickle.dump({"blobs": {"conv1_w": Payload()}}, handle, protocol=2)
    with pytest.raises(Caffe2Error, match=r"evil\.pkl: refused, the pickle asks for the global posix\.system"):
        ckpt.load_file(str(path))
    assert not marker.exists()


def test_py3_bytes_are_decoded_as_latin1_only(tmp_path):
    path = tmp_path / "codec.pkl"
    with open(path, "wb") as handle:  # _codecs.encode(..., 'rot13') would be another function
        handle.write(b"\x80\x02c_codecs\nencode\nX\x03\x00\x00\x00abcX\x05\x00\x00\x00rot13\x86R.")
    with pytest.raises(Caffe2Error, match=r"codec\.pkl: unreadable as a Caffe2 pickle .*rot13"):
        ckpt.load_file(str(path))


@pytest.fixture(scope="module")
def plain_r50(tmp_path_factory):
    return reference_blobs(50, {}), build_model(config("I3D_8x8_R50.yaml", "MODEL.NUM_CLASSES", 400))


def _damaged(tmp_path, blobs, change):
    damaged = dict(blobs)
    change(damaged)
    return write_pickle(tmp_path / "damaged.pkl", damaged)


def test_a_truncated_file_is_named(tmp_path, plain_r50):
    whole = Path(write_pickle(tmp_path / "whole.pkl", plain_r50[0])).read_bytes()
    (tmp_path / "cut.pkl").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(Caffe2Error, match=r"cut\.pkl: unreadable as a Caffe2 pickle .*truncated") as err:
        ckpt.load_file(str(tmp_path / "cut.pkl"))
    assert "\n" not in str(err.value)


def test_a_missing_blob_is_named(tmp_path, plain_r50):
    blobs, model = plain_r50
    path = _damaged(tmp_path, blobs, lambda b: b.pop("res3_1_branch2b_bn_riv"))
    with pytest.raises(Caffe2Error, match=r"damaged\.pkl: no blob res3_1_branch2b_bn_riv \(for the "
                                          r"model's blocks\.3\.res_blocks\.1\.branch2\.norm_b\.running_var\)"):
        ckpt.load_for_test(model, path)


def test_a_wrong_shape_names_the_blob_and_both_shapes(tmp_path, plain_r50):
    blobs, model = plain_r50
    c2d = blobs["res4_0_branch2a_w"][:, :, 1:2]  # a C2D block: 1x1x1 where the I3D has 3x1x1
    path = _damaged(tmp_path, blobs, lambda b: b.update(res4_0_branch2a_w=c2d))
    inner, dim_in = 4 * WIDTH, 8 * WIDTH
    with pytest.raises(Caffe2Error, match=re.escape(
            f"damaged.pkl: blob res4_0_branch2a_w has shape ({inner}, {dim_in}, 1, 1, 1) but the model's "
            f"blocks.4.res_blocks.0.branch2.conv_a.weight is ({inner}, {dim_in}, 3, 1, 1)")):
        ckpt.load_for_test(model, path)


def test_testing_needs_the_head_and_nonlocal_blobs_the_file_lacks_are_refused(tmp_path, plain_r50):
    blobs, _ = plain_r50
    path = write_pickle(tmp_path / "plain.pkl", blobs)
    with pytest.raises(Caffe2Error, match=r"plain\.pkl: blob pred_w has shape \(400, \d+\) but the model's "
                                          r"blocks\.6\.proj\.weight is \(200, \d+\)"):
        ckpt.load_for_test(build_model(config("I3D_8x8_R50.yaml")), path)
    with pytest.raises(Caffe2Error, match=r"plain\.pkl: no blob nonlocal_conv4_4_theta_w"):
        ckpt.load_for_test(build_model(config("I3D_8x8_R50_NL1.yaml", "MODEL.NUM_CLASSES", 400)), path)
    with pytest.raises(Caffe2Error, match=r"plain\.pkl: the model has weights no Caffe2 blob is named for "
                                          r"\(CGNL blocks .*blocks\.4\.res_blocks\.5\."):
        ckpt.load_for_test(build_model(config("I3D_8x8_R50_CGNL1.yaml", "MODEL.NUM_CLASSES", 400)), path)


def test_nonlocal_blobs_with_no_place_in_the_model_are_refused(tmp_path):
    path = write_pickle(tmp_path / "nl.pkl", reference_blobs(50, {4: (4,)}))
    cfg = config("I3D_8x8_R50.yaml", "TRAIN.CHECKPOINT_FILE_PATH", path)
    with pytest.raises(Caffe2Error, match=r"nl\.pkl: 12 blobs fit no part of the model .*nonlocal_conv4_4_bn_b"):
        ckpt.initialise(ckpt.TrainState(build_model(cfg), None, None, None), cfg, ckpt.initial_point(cfg))


def test_the_checkpoint_type_is_checked(tmp_path):
    torch.save({"model": {}}, tmp_path / "ours.pyth")
    with pytest.raises(Caffe2Error, match=r"ours\.pyth: a PyTorch checkpoint, not a Caffe2 pickle"):
        ckpt.load_file(str(tmp_path / "ours.pyth"), "caffe2")
    with pytest.raises(ConfigError, match="TRAIN.CHECKPOINT_TYPE='caffe3': expected one of"):
        config("I3D_8x8_R50.yaml", "TRAIN.CHECKPOINT_TYPE", "caffe3")
    with pytest.raises(ConfigError, match="TRAIN.CHECKPOINT_EPOCH_RESET=False: expected True with "
                                          "TRAIN.CHECKPOINT_TYPE=caffe2"):
        config("I3D_8x8_R50.yaml", "TRAIN.CHECKPOINT_TYPE", "caffe2", "TRAIN.CHECKPOINT_EPOCH_RESET", False)


def _tool(tool, opts):
    result = run_tool(tool, opts)
    return result.stdout + result.stderr


def test_train_and_test_tools_start_from_caffe2_pickles(data_dir, tmp_path):
    """Fine-tuning a 400-way NL R50 pickle for the tiny 2-class set, then testing a 2-way one."""
    tiny = {"RESNET.DEPTH": 50, "NONLOCAL.TYPE": "nl", "NONLOCAL.LOCATION": "[[],[1],[],[]]"}
    zoo = write_pickle(tmp_path / "I3D_NLN.pkl", reference_blobs(50, {3: (1,)}, width=8))
    out = str(tmp_path / "run")
    log = _tool("train_net.py", tiny_opts(data_dir, out, **tiny, **{
        "SOLVER.MAX_EPOCH": 1, "TRAIN.EVAL_PERIOD": 0, "TRAIN.CHECKPOINT_FILE_PATH": zoo,
        "TRAIN.CHECKPOINT_TYPE": "caffe2"}))
    assert os.path.isfile(ckpt.checkpoint_path(out, 1))
    assert "classifier blobs skipped" in log and "pred_w (400, 256) vs model (2, 256)" in log
    two_way = reference_blobs(50, {3: (1,)}, num_classes=2, width=8, seed=1)
    reference = write_pickle(tmp_path / "two_way.pkl", two_way)
    log = _tool("test_net.py", tiny_opts(data_dir, out, **tiny, **{"TEST.CHECKPOINT_FILE_PATH": reference}))
    assert "top1" in log and "Caffe2 pickle" in log
