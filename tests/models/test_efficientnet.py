"""EfficientNet-Lite: the port reproduces the reference network on the shipped ImageNet weights, loads them strictly,
and keeps the details (TF padding, BatchNorm eps/momentum, grey stem) that make fine-tuning behave.

The registry contract (shapes, backward, determinism) is covered for these models by tests/models/test_registry.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage import data as skdata
from skimage.transform import resize
from torch import nn

from models import create_model
from models.efficientnet import (
    BN_EPS,
    PRETRAINED_MEAN,
    PRETRAINED_STD,
    EfficientNetLite,
    load_pretrained,
    same_padding,
)
from tasks.pretrained import pretrained_weights_path

LITES = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]
# Logits of the reference implementation (ml-illustrated's efficientnet_lite_pytorch 0.1.0, lukemelas' EfficientNet
# with TF "SAME" padding, the code the weights were ported with) on `_pattern` at each model's training resolution:
# (size, top-3 (class, logit), mean of the 1000 logits, L2 norm). Symmetric padding moves these by ~1.
REFERENCE = {
    "efficientnet_lite0": (224, [(644, 6.3962), (885, 6.3478), (818, 5.7902)], -0.06865, 45.9098),
    "efficientnet_lite1": (240, [(641, 5.3484), (644, 5.3121), (418, 5.1551)], -0.07388, 46.4415),
    "efficientnet_lite2": (260, [(418, 6.4010), (644, 5.4213), (818, 5.1367)], -0.07652, 42.4764),
}


@pytest.fixture(autouse=True)
def _single_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _pattern(size: int) -> torch.Tensor:
    """A smooth deterministic RGB image in [0, 1], ``(1, 3, size, size)``, needing no image library."""
    yy, xx = np.meshgrid(np.linspace(0, 1, size), np.linspace(0, 1, size), indexing="ij")
    rgb = np.stack([0.5 + 0.5 * np.sin(12 * xx + 3 * yy), 0.5 + 0.5 * np.cos(9 * yy * xx), (xx + yy) / 2])
    return torch.from_numpy(rgb.astype(np.float32))[None]


def _normalise(x: torch.Tensor, model: EfficientNetLite) -> torch.Tensor:
    mean = torch.tensor(model.pretrained_cfg["mean"])[:, None, None]
    std = torch.tensor(model.pretrained_cfg["std"])[:, None, None]
    return (x - mean) / std


def _imagenet_model(name: str) -> EfficientNetLite:
    model = create_model(name, in_chans=3, num_classes=1000).eval()
    load_pretrained(model, pretrained_weights_path(name), classifier=True)
    return model


@pytest.mark.parametrize("name", LITES)
def test_port_reproduces_the_reference_logits(name: str) -> None:
    size, top, mean, norm = REFERENCE[name]
    model = _imagenet_model(name)
    assert model.pretrained_cfg["input_size"] == [3, size, size]
    with torch.no_grad():
        logits = model(_normalise(_pattern(size), model))[0].double()
    classes, values = zip(*top, strict=True)
    assert logits.topk(3).indices.tolist() == list(classes)
    torch.testing.assert_close(logits[list(classes)], torch.tensor(values, dtype=torch.float64), atol=2e-3, rtol=0)
    assert float(logits.mean()) == pytest.approx(mean, abs=2e-4)
    assert float(logits.norm()) == pytest.approx(norm, abs=2e-3)


@pytest.mark.parametrize(("photo", "imagenet_class"), [("chelsea", 285), ("coffee", 967)])
def test_real_photos_get_their_imagenet_class(photo: str, imagenet_class: int) -> None:
    """A cat photo is an 'Egyptian cat' (285) and a cup of coffee an 'espresso' (967), confidently."""
    image = getattr(skdata, photo)().astype(np.float32) / 255.0
    image = resize(image, (224, 224), anti_aliasing=True).astype(np.float32)
    model = _imagenet_model("efficientnet_lite0")
    with torch.no_grad():
        probs = model(_normalise(torch.from_numpy(image).permute(2, 0, 1)[None], model)).softmax(-1)[0]
    assert int(probs.argmax()) == imagenet_class
    assert float(probs[imagenet_class]) > 0.7


@pytest.mark.parametrize("name", LITES)
def test_load_pretrained_fills_every_backbone_tensor_and_leaves_the_new_head(name: str) -> None:
    path = pretrained_weights_path(name)
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = create_model(name, in_chans=3, num_classes=2)
    head_before = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("head.")}
    load_pretrained(model, path)
    loaded = model.state_dict()
    backbone = [k for k in loaded if not k.startswith("head.")]
    assert sorted(backbone) == sorted(k for k in state if not k.startswith("_fc."))
    for key in backbone:
        torch.testing.assert_close(loaded[key], state[key], rtol=0, atol=0)
    for key, value in head_before.items():
        torch.testing.assert_close(loaded[key], value, rtol=0, atol=0)


def test_grey_model_equals_the_rgb_model_on_the_grey_image_repeated() -> None:
    """in_chans=1 sums the RGB stem: exactly what repeating the grey channel three times computes."""
    path = pretrained_weights_path("efficientnet_lite0")
    grey = create_model("efficientnet_lite0", in_chans=1).eval()
    rgb = create_model("efficientnet_lite0", in_chans=3).eval()
    load_pretrained(grey, path)
    load_pretrained(rgb, path)
    assert grey._conv_stem.weight.shape == (32, 1, 3, 3)
    assert grey.pretrained_cfg["mean"] == [PRETRAINED_MEAN] and grey.pretrained_cfg["std"] == [PRETRAINED_STD]
    x = _normalise(_pattern(96)[:, :1], grey)  # (1, 1, 96, 96)
    with torch.no_grad():  # equal up to float32 summation order
        expected = rgb.forward_features(x.repeat(1, 3, 1, 1))
        torch.testing.assert_close(grey.forward_features(x), expected, atol=1e-4, rtol=1e-4)


@pytest.fixture(scope="module")
def lite0_state() -> dict[str, torch.Tensor]:
    return torch.load(pretrained_weights_path("efficientnet_lite0"), map_location="cpu", weights_only=True)


def test_a_mismatching_file_is_refused_naming_missing_unexpected_and_misshaped_keys(
    lite0_state: dict[str, torch.Tensor], tmp_path: Path
) -> None:
    state = dict(lite0_state)
    del state["_blocks.3._bn1.running_var"]
    state["_blocks.3._se_reduce.weight"] = torch.zeros(4, 144, 1, 1)
    state["_conv_head.weight"] = torch.zeros(1280, 336, 1, 1)
    path = tmp_path / "edited.pth"
    torch.save(state, path)
    model = create_model("efficientnet_lite0", in_chans=3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError) as err:
        load_pretrained(model, path)
    message = str(err.value)
    assert str(path) in message
    assert "missing from the file: _blocks.3._bn1.running_var" in message
    assert "not in the model: _blocks.3._se_reduce.weight" in message
    assert "_conv_head.weight file (1280, 336, 1, 1) vs model (1280, 320, 1, 1)" in message
    for key, value in model.state_dict().items():  # nothing half-loaded
        torch.testing.assert_close(value, before[key], rtol=0, atol=0)


def test_weights_of_another_size_or_class_count_are_refused() -> None:
    with pytest.raises(ValueError, match=r"not in the model: _blocks\.16\..*another EfficientNet-Lite size"):
        load_pretrained(create_model("efficientnet_lite0"), pretrained_weights_path("efficientnet_lite1"))
    two_classes = create_model("efficientnet_lite0", num_classes=2)
    with pytest.raises(ValueError, match=r"classifier: shape mismatches: head\.fc\.weight file \(1000, 1280\)"):
        load_pretrained(two_classes, pretrained_weights_path("efficientnet_lite0"), classifier=True)


def test_unreadable_files_and_unsupported_channels_are_refused(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such weights file"):
        load_pretrained(create_model("efficientnet_lite0"), tmp_path / "absent.pth")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a zip archive")
    with pytest.raises(ValueError, match="not a readable PyTorch state dict"):
        load_pretrained(create_model("efficientnet_lite0"), garbage)
    listing = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], listing)
    with pytest.raises(ValueError, match="not a state dict of tensors"):
        load_pretrained(create_model("efficientnet_lite0"), listing)
    with pytest.raises(ValueError, match="in_chans=2; build the model with in_chans=1"):
        load_pretrained(create_model("efficientnet_lite0", in_chans=2), pretrained_weights_path("efficientnet_lite0"))


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "pad"),
    [(224, 3, 2, (0, 1)), (224, 5, 2, (1, 2)), (15, 5, 2, (2, 2)), (7, 3, 2, (1, 1)), (56, 5, 1, (2, 2))],
)
def test_same_padding_matches_tensorflow(size: int, kernel: int, stride: int, pad: tuple[int, int]) -> None:
    """TF pads an even input's stride-2 conv by one more pixel after than before; odd inputs symmetrically."""
    assert same_padding(size, kernel, stride) == pad
    x = torch.randn(1, 1, size, size)
    conv = nn.Conv2d(1, 1, kernel, stride=stride, bias=False)
    expected = -(-size // stride)
    assert conv(torch.nn.functional.pad(x, (*pad, *pad))).shape[-1] == expected


def test_batchnorm_uses_tf_eps_and_pytorch_momentum() -> None:
    """eps 1e-3 is what the running variances were estimated with; momentum 0.1 (not the ported 0.01) lets a
    short fine-tune's running statistics leave ImageNet's (0.01 measured balanced accuracy 0.555 on ELPV)."""
    norms = [m for m in create_model("efficientnet_lite0").modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(norms) == 2 + 3 * 16 - 1  # stem, head, three per block but the first (no expand conv)
    assert all(m.eps == BN_EPS == 1e-3 and m.momentum == 0.1 for m in norms)


def test_drop_path_drops_residual_branches_in_training_only() -> None:
    model = create_model("efficientnet_lite0", drop_path_rate=0.5)
    assert model._blocks[-2].drop_path_rate > model._blocks[2].drop_path_rate > 0 == model._blocks[0].drop_path_rate
    x = torch.randn(2, 1, 64, 64)
    model.train()
    torch.manual_seed(1)
    a = model.forward_features(x)
    torch.manual_seed(2)
    b = model.forward_features(x)
    assert not torch.allclose(a, b)
    model.eval()
    torch.testing.assert_close(model.forward_features(x), model.forward_features(x), rtol=0, atol=0)


def test_odd_and_non_square_inputs_give_the_stride_32_feature_map() -> None:
    model = create_model("efficientnet_lite0").eval()
    with torch.no_grad():
        features = model.forward_features(torch.randn(1, 1, 100, 250))
    assert features.shape == (1, 1280, 4, 8)  # ceil(100 / 32), ceil(250 / 32): TF "SAME" keeps every pixel
