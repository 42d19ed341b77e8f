"""2D -> 3D inflation of torchvision ResNets."""

import pytest
import torch
import torchvision
from torchvision.models.feature_extraction import create_feature_extractor

from cgnl_video.config import load_config
from cgnl_video.models import build_model, inflate_from_2d, load_inflated_weights
from cgnl_video.models.pretrained import PretrainedError

# Static clips of T = 40 frames give res5 maps of 20 time steps; its central steps
# see no temporal zero padding, so there the 3D net must equal the 2D one.
NUM_FRAMES = 40
CENTRAL_STEPS = slice(9, 11)


def random_torchvision_resnet(depth):
    torch.manual_seed(depth)
    net = getattr(torchvision.models, f"resnet{depth}")(weights=None)
    for module in net.modules():  # non-trivial BatchNorm statistics and affine terms
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.1)
            module.running_var.uniform_(0.5, 1.5)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.normal_(0, 0.1)
    return net.eval()


def backbone_features(model, clip):
    """res5 output of the I3D net: every block but the head."""
    for block in list(model.blocks)[:-1]:
        clip = block(clip)
    return clip


@pytest.mark.parametrize("depth", [50, 18])
def test_static_clip_reproduces_2d_features(tmp_path, depth):
    net2d = random_torchvision_resnet(depth)
    path = tmp_path / f"resnet{depth}.pth"
    torch.save(net2d.state_dict(), path)
    model = build_model(load_config(None, ["RESNET.DEPTH", str(depth)])).eval()
    unused = load_inflated_weights(model, str(path))
    assert unused == ["fc.bias", "fc.weight"]  # 1000 ImageNet classes vs 400
    image = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = create_feature_extractor(net2d, ["layer4"])(image)["layer4"]
        clip = image[:, :, None].repeat(1, 1, NUM_FRAMES, 1, 1)
        features = backbone_features(model, clip)[:, :, CENTRAL_STEPS]
    assert features.shape[-2:] == expected.shape[-2:]
    scale = expected.abs().max()
    torch.testing.assert_close(features / scale, expected[:, :, None].expand_as(features) / scale,
                               rtol=0, atol=1e-4)


def test_kernels_are_repeated_over_time_and_divided():
    net2d = random_torchvision_resnet(18)
    model = build_model(load_config(None, ["RESNET.DEPTH", "18", "MODEL.NUM_CLASSES", "1000"]))
    assert inflate_from_2d(model, net2d.state_dict()) == []  # head copied too
    stem = model.blocks[0].conv.weight
    assert stem.shape[2] == 5
    for t in range(5):
        torch.testing.assert_close(stem[:, :, t], net2d.conv1.weight / 5)
    torch.testing.assert_close(model.blocks[-1].proj.weight, net2d.fc.weight)


def test_nonlocal_blocks_keep_their_identity_init():
    cfg = load_config(None, ["RESNET.DEPTH", "18", "NONLOCAL.LOCATION", "[[], [], [1], []]"])
    model = build_model(cfg)
    inflate_from_2d(model, random_torchvision_resnet(18).state_dict())
    assert torch.all(model.blocks[4].res_blocks[2].gn.weight == 0)


def test_wrong_depth_names_the_file_and_key(tmp_path):
    path = tmp_path / "r18.pth"
    torch.save(random_torchvision_resnet(18).state_dict(), path)
    model = build_model(load_config())
    with pytest.raises(ValueError, match=r"r18\.pth: layer1\.0\.conv1\.weight"):
        load_inflated_weights(model, str(path))


def test_missing_file_is_named(tmp_path):
    with pytest.raises(PretrainedError, match="nope.pth: weights file not found"):
        load_inflated_weights(build_model(load_config()), str(tmp_path / "nope.pth"))
