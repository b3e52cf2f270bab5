"""Image classifiers for defect detection, written from scratch (no torchvision/timm at run time).

Every model follows timm's interface so one training loop, one fine-tuning path and one Grad-CAM hook serve
them all:

- ``forward_features(x)``: ``(B, in_chans, H, W) -> (B, num_features, H', W')``;
- ``forward_head(x, pre_logits=False)``: pooled ``(B, num_features)`` if ``pre_logits`` else logits
  ``(B, num_classes)``;
- ``forward(x) == forward_head(forward_features(x))``;
- attributes ``num_features``, ``num_classes``, ``in_chans`` and ``feature_layer`` (the module whose output is
  the ``forward_features`` map, the usual Grad-CAM target).

Global pooling makes every model accept any input of at least 32 x 32 pixels.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from models.layers import BasicBlock, ClassifierHead, ConvNormAct, Fire, init_weights
from models.registry import register_model

MIN_INPUT_SIZE = 32
"""Smallest height/width in pixels every image model here accepts."""


def _check_common(in_chans: int, num_classes: int, drop_rate: float) -> None:
    if in_chans < 1:
        raise ValueError(f"in_chans={in_chans}; use 1 for grey images or 3 for colour")
    if num_classes < 0:
        raise ValueError(f"num_classes={num_classes}; use >= 1, or 0 for a feature extractor without a classifier")
    if not 0.0 <= drop_rate < 1.0:
        raise ValueError(f"drop_rate={drop_rate} must be in [0, 1)")


class ResNet(nn.Module):
    """A small ResNet of :class:`~models.layers.BasicBlock` stages (He et al., 2016).

    The stem is a single 3x3 conv (stride ``stem_stride``) instead of ImageNet's 7x7 + max-pool: solar-cell
    cracks are a few pixels wide at 100-150 px, so the network should not throw resolution away in the first
    layer. Each stage after the first halves H and W.

    Args:
        in_chans: Input channels.
        num_classes: Output logits (0: no classifier, ``forward`` returns pooled features).
        drop_rate: Dropout before the classifier.
        widths: Channels of each stage.
        depths: BasicBlocks per stage.
        stem_width: Channels of the stem conv; defaults to ``widths[0]``.
        stem_stride: Stride of the stem conv.
        stem_pool: Follow the stem with a 2x2 max-pool: 4x fewer activations in every stage. The conv still sees
            full resolution, and a learned dark-line detector's response survives the max, so thin cracks are
            kept while the cost drops to that of a quarter-size input (for CPUs).
        se: Add Squeeze-Excitation to every block.
        pool_type: Global pooling, see :func:`models.layers.global_pool`.
    """

    def __init__(
        self,
        in_chans: int = 1,
        num_classes: int = 2,
        drop_rate: float = 0.0,
        widths: Sequence[int] = (24, 48, 96, 192),
        depths: Sequence[int] = (1, 1, 1, 1),
        stem_width: int | None = None,
        stem_stride: int = 2,
        stem_pool: bool = False,
        se: bool = False,
        pool_type: str = "avg",
    ) -> None:
        super().__init__()
        _check_common(in_chans, num_classes, drop_rate)
        if len(widths) != len(depths) or not widths or min(depths) < 1:
            raise ValueError(f"widths={tuple(widths)} and depths={tuple(depths)} need the same non-zero length")
        self.in_chans = in_chans
        self.num_classes = num_classes
        self.num_features = widths[-1]
        stem_width = stem_width or widths[0]

        self.stem = ConvNormAct(in_chans, stem_width, 3, stride=stem_stride)
        self.stem_pool = nn.MaxPool2d(2) if stem_pool else nn.Identity()
        stages: list[nn.Module] = []
        prev = stem_width
        for i, (width, depth) in enumerate(zip(widths, depths, strict=True)):
            stride = 1 if i == 0 else 2  # the stem already halved the input; later stages halve again
            blocks = [BasicBlock(prev, width, stride, se)]
            blocks += [BasicBlock(width, width, 1, se) for _ in range(depth - 1)]
            stages.append(nn.Sequential(*blocks))
            prev = width
        self.stages = nn.Sequential(*stages)
        self.head = ClassifierHead(self.num_features, num_classes, drop_rate, pool_type)
        init_weights(self)

    @property
    def feature_layer(self) -> nn.Module:
        """The last residual block; its output is the ``forward_features`` map (Grad-CAM target)."""
        return self.stages[-1][-1]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem_pool(self.stem(x))  # (B, stem_width, H/s, W/s), halved again with stem_pool
        return self.stages(x)  # (B, num_features, H/(s*2^(n_stages-1)), ...)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier with a fresh one for ``num_classes`` outputs (fine-tuning)."""
        self.num_classes = num_classes
        self.head = ClassifierHead(self.num_features, num_classes, self.head.drop_rate, self.head.pool_type)
        init_weights(self.head)


class SqueezeNet(nn.Module):
    """SqueezeNet 1.1 layout (Iandola et al., 2016) with BatchNorm and a pooled linear head.

    Fire modules keep the parameter count under a megabyte, which suits CPU training and the compression stage.
    Each stage starts with a 3x3/2 max-pool (``ceil_mode`` so 32 px inputs still leave a 2x2 map).

    Args:
        in_chans: Input channels.
        num_classes: Output logits (0: no classifier).
        drop_rate: Dropout before the classifier.
        stem_width: Channels of the stride-2 3x3 stem conv.
        stages: Per stage, a sequence of ``(squeeze, expand)`` Fire widths; each Fire outputs ``2 * expand``
            channels (equal 1x1 and 3x3 expand branches, as in the paper).
        pool_type: Global pooling, see :func:`models.layers.global_pool`.
    """

    def __init__(
        self,
        in_chans: int = 1,
        num_classes: int = 2,
        drop_rate: float = 0.0,
        stem_width: int = 64,
        stages: Sequence[Sequence[tuple[int, int]]] = (
            ((16, 64), (16, 64)),
            ((32, 128), (32, 128)),
            ((48, 192), (48, 192), (64, 256), (64, 256)),
        ),
        pool_type: str = "avg",
    ) -> None:
        super().__init__()
        _check_common(in_chans, num_classes, drop_rate)
        if not stages or not all(stages):
            raise ValueError(f"stages={stages!r} needs at least one stage with at least one Fire module")
        self.in_chans = in_chans
        self.num_classes = num_classes

        self.stem = ConvNormAct(in_chans, stem_width, 3, stride=2)
        layers: list[nn.Module] = []
        prev = stem_width
        for stage in stages:
            layers.append(nn.MaxPool2d(3, stride=2, ceil_mode=True))
            for squeeze, expand in stage:
                layers.append(Fire(prev, squeeze, expand, expand))
                prev = 2 * expand
        self.features = nn.Sequential(*layers)
        self.num_features = prev
        self.head = ClassifierHead(self.num_features, num_classes, drop_rate, pool_type)
        init_weights(self)

    @property
    def feature_layer(self) -> nn.Module:
        """The last Fire module; its output is the ``forward_features`` map (Grad-CAM target)."""
        return self.features[-1]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)  # (B, stem_width, H/2, W/2)
        return self.features(x)  # (B, num_features, ~H/16, ~W/16)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier with a fresh one for ``num_classes`` outputs (fine-tuning)."""
        self.num_classes = num_classes
        self.head = ClassifierHead(self.num_features, num_classes, self.head.drop_rate, self.head.pool_type)
        init_weights(self.head)


@register_model("image")
def resnet_tiny(in_chans: int = 1, num_classes: int = 2, drop_rate: float = 0.0, **kwargs: object) -> ResNet:
    """A few-thousand-parameter ResNet for tests and smoke runs (not meant to be accurate)."""
    args: dict = dict(widths=(8, 16, 32), depths=(1, 1, 1))
    return ResNet(in_chans, num_classes, drop_rate, **{**args, **kwargs})


@register_model("image")
def resnet_small(in_chans: int = 1, num_classes: int = 2, drop_rate: float = 0.0, **kwargs: object) -> ResNet:
    """ResNet with widths 24/48/96/192, one block per stage (~0.69 M parameters).

    Sized for 96-160 px grey solar-cell images trained on a 2-core CPU in seconds per epoch.
    """
    args: dict = dict(widths=(24, 48, 96, 192), depths=(1, 1, 1, 1))
    return ResNet(in_chans, num_classes, drop_rate, **{**args, **kwargs})


@register_model("image")
def resnet_fast(in_chans: int = 1, num_classes: int = 2, drop_rate: float = 0.0, **kwargs: object) -> ResNet:
    """``resnet_small`` with a max-pooled stem: 128 px input at the cost of 64 px, the 2-core CPU default."""
    args: dict = dict(widths=(24, 48, 96, 192), depths=(1, 1, 1, 1), stem_pool=True)
    return ResNet(in_chans, num_classes, drop_rate, **{**args, **kwargs})


@register_model("image")
def resnet_medium(in_chans: int = 1, num_classes: int = 2, drop_rate: float = 0.0, **kwargs: object) -> ResNet:
    """SE-ResNet with widths 32/64/128/256 and two blocks per stage (~2.8 M parameters), for GPU training."""
    args: dict = dict(widths=(32, 64, 128, 256), depths=(2, 2, 2, 2), se=True)
    return ResNet(in_chans, num_classes, drop_rate, **{**args, **kwargs})


@register_model("image")
def squeezenet_tiny(in_chans: int = 1, num_classes: int = 2, drop_rate: float = 0.0, **kwargs: object) -> SqueezeNet:
    """A three-Fire SqueezeNet for tests and smoke runs."""
    args: dict = dict(stem_width=16, stages=(((4, 16),), ((8, 32),), ((12, 48),)))
    return SqueezeNet(in_chans, num_classes, drop_rate, **{**args, **kwargs})


@register_model("image")
def squeezenet_small(in_chans: int = 1, num_classes: int = 2, drop_rate: float = 0.0, **kwargs: object) -> SqueezeNet:
    """SqueezeNet 1.1 widths with BatchNorm (~0.72 M parameters for one input channel)."""
    return SqueezeNet(in_chans, num_classes, drop_rate, **kwargs)
