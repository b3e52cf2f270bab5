"""Building blocks shared by the model files, so that no model file copies another (timm's ``layers/``).

Shapes in comments use B = batch, C = channels, H/W = height/width in pixels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConvNormAct(nn.Sequential):
    """Conv2d (no bias) -> BatchNorm2d -> activation, the unit every CNN here is built from.

    The conv has no bias because the BatchNorm that follows has its own shift. ``padding`` defaults to
    ``kernel_size // 2`` so a stride-1 conv keeps the spatial size.

    Args:
        in_chans: Input channels.
        out_chans: Output channels.
        kernel_size: Square kernel size in pixels.
        stride: Conv stride.
        padding: Zero padding; ``None`` for "same"-style ``kernel_size // 2``.
        groups: Conv groups.
        apply_act: ``False`` for a projection (e.g. the last conv of a residual branch or a shortcut) whose
            output is added to something else before the nonlinearity.
        act_layer: Activation class, instantiated without arguments.
    """

    def __init__(
        self,
        in_chans: int,
        out_chans: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int | None = None,
        groups: int = 1,
        apply_act: bool = True,
        act_layer: type[nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            in_chans,
            out_chans,
            kernel_size,
            stride=stride,
            padding=kernel_size // 2 if padding is None else padding,
            groups=groups,
            bias=False,
        )
        self.bn = nn.BatchNorm2d(out_chans)
        self.act = act_layer() if apply_act else nn.Identity()


class SqueezeExcite(nn.Module):
    """Squeeze-and-Excitation channel attention (Hu et al., 2018, "Squeeze-and-Excitation Networks").

    Reweights channels by a gate computed from their global average, which helps when a defect is a small
    local feature whose channel response would otherwise be diluted.

    Args:
        channels: Channels in and out.
        rd_ratio: Bottleneck width as a fraction of ``channels``.
    """

    def __init__(self, channels: int, rd_ratio: float = 0.25) -> None:
        super().__init__()
        rd = max(8, int(round(channels * rd_ratio)))
        self.fc1 = nn.Conv2d(channels, rd, 1)
        self.act = nn.ReLU()
        self.fc2 = nn.Conv2d(rd, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(dim=(2, 3), keepdim=True)  # (B, C, 1, 1)
        s = self.fc2(self.act(self.fc1(s)))  # (B, C, 1, 1)
        return x * torch.sigmoid(s)


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 convs plus a shortcut (He et al., 2016, "Deep Residual Learning").

    When ``stride != 1`` or the width changes, the shortcut is a strided 1x1 conv + BatchNorm so it matches the
    residual branch's shape. The last BatchNorm of the branch starts at zero (Goyal et al., 2017), so every
    block starts as the identity, which makes training from scratch stable at high learning rates.

    Args:
        in_chans: Input channels.
        out_chans: Output channels.
        stride: Stride of the first conv (2 halves H and W).
        se: Add a Squeeze-Excitation gate on the residual branch.
    """

    def __init__(self, in_chans: int, out_chans: int, stride: int = 1, se: bool = False) -> None:
        super().__init__()
        self.conv1 = ConvNormAct(in_chans, out_chans, 3, stride=stride)
        self.conv2 = ConvNormAct(out_chans, out_chans, 3, apply_act=False)
        nn.init.zeros_(self.conv2.bn.weight)
        self.se = SqueezeExcite(out_chans) if se else nn.Identity()
        if stride != 1 or in_chans != out_chans:
            self.downsample: nn.Module = ConvNormAct(in_chans, out_chans, 1, stride=stride, apply_act=False)
        else:
            self.downsample = nn.Identity()
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = self.downsample(x)  # (B, out, H/stride, W/stride)
        out = self.se(self.conv2(self.conv1(x)))  # (B, out, H/stride, W/stride)
        return self.act(out + shortcut)


class Fire(nn.Module):
    """SqueezeNet Fire module (Iandola et al., 2016, "SqueezeNet: AlexNet-level accuracy with 50x fewer
    parameters"), with BatchNorm after every conv.

    A 1x1 "squeeze" conv cuts the channels, then parallel 1x1 and 3x3 "expand" convs are concatenated, giving
    ``expand1x1 + expand3x3`` output channels at a fraction of a full 3x3 conv's parameters.

    Args:
        in_chans: Input channels.
        squeeze: Channels after the squeeze conv.
        expand1x1: Output channels of the 1x1 expand branch.
        expand3x3: Output channels of the 3x3 expand branch.
    """

    def __init__(self, in_chans: int, squeeze: int, expand1x1: int, expand3x3: int) -> None:
        super().__init__()
        self.squeeze = ConvNormAct(in_chans, squeeze, 1)
        self.expand1x1 = ConvNormAct(squeeze, expand1x1, 1)
        self.expand3x3 = ConvNormAct(squeeze, expand3x3, 3)
        self.out_chans = expand1x1 + expand3x3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.squeeze(x)  # (B, squeeze, H, W)
        return torch.cat([self.expand1x1(s), self.expand3x3(s)], dim=1)  # (B, e1 + e3, H, W)


def global_pool(x: torch.Tensor, pool_type: str = "avg") -> torch.Tensor:
    """Pool a feature map over all spatial positions, so any input size gives a fixed-size vector.

    Args:
        x: Feature map ``(B, C, H, W)``.
        pool_type: ``"avg"``, ``"max"`` or ``"avgmax"`` (the mean of both, timm's choice for texture-like
            defects where one strong response and the overall level both matter).

    Returns:
        Pooled features ``(B, C)``.
    """
    if pool_type == "avg":
        return x.mean(dim=(2, 3))
    if pool_type == "max":
        return x.amax(dim=(2, 3))
    if pool_type == "avgmax":
        return 0.5 * (x.mean(dim=(2, 3)) + x.amax(dim=(2, 3)))
    raise ValueError(f"unknown pool_type {pool_type!r}; use 'avg', 'max' or 'avgmax'")


class ClassifierHead(nn.Module):
    """Global pooling -> dropout -> linear, the head shared by every image classifier.

    Args:
        in_features: Channels of the feature map.
        num_classes: Output logits; 0 makes the head return pooled features only.
        drop_rate: Dropout probability before the linear layer.
        pool_type: See :func:`global_pool`.
    """

    def __init__(self, in_features: int, num_classes: int, drop_rate: float = 0.0, pool_type: str = "avg") -> None:
        super().__init__()
        global_pool(torch.zeros(1, 1, 1, 1), pool_type)  # fail at construction, not at the first batch
        self.pool_type = pool_type
        self.drop_rate = drop_rate
        self.fc: nn.Module = nn.Linear(in_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = global_pool(x, self.pool_type)  # (B, C)
        if pre_logits:
            return x
        x = F.dropout(x, p=self.drop_rate, training=self.training)
        return self.fc(x)  # (B, num_classes)


def init_weights(module: nn.Module) -> None:
    """Kaiming-normal init for convs (He et al., 2015) and a small-normal init for linear layers.

    Training from scratch with ReLU needs fan-aware init to keep activations from vanishing. BatchNorm is left
    alone: PyTorch's defaults (weight 1, bias 0) are right, and blocks may have zeroed their last BatchNorm on
    purpose (see :class:`BasicBlock`).
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.01)
            nn.init.zeros_(m.bias)


class KernelHead(nn.Module):
    """An RBF-kernel SVM over standardised features as a torch layer: ``logits = a * d(x) + b`` per class.

    ``d(x) = sum_s alpha_s exp(-gamma ||z - sv_s||^2) + c`` with ``z = (x - mean) / scale`` is a fitted
    scikit-learn ``SVC``'s decision function, and ``a, b`` its Platt scaling, so the softmax gives probabilities
    and the whole candidate stays one torch model that exports, explains and predicts like any other. The squared
    distance is expanded as ``|z|^2 - 2 z.sv + |sv|^2`` (matrix products only, which ONNX exports). A binary SVM
    has one output; it becomes logits ``(0, a d + b)``, whose softmax is the Platt sigmoid.

    Args:
        n_features: Input width (the backbone's pooled features).
        n_support: Support vectors kept (all outputs share one set; unused ones carry zero coefficients).
        n_outputs: Decision functions: 1 for a binary SVM, else one per class (one-vs-rest).
    """

    def __init__(self, n_features: int, n_support: int, n_outputs: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("scale", torch.ones(n_features))
        self.register_buffer("support", torch.zeros(n_support, n_features))
        self.register_buffer("dual", torch.zeros(n_outputs, n_support))
        self.register_buffer("intercept", torch.zeros(n_outputs))
        self.register_buffer("gamma", torch.ones(()))
        self.register_buffer("platt_a", torch.ones(n_outputs))
        self.register_buffer("platt_b", torch.zeros(n_outputs))

    def decision(self, x: torch.Tensor) -> torch.Tensor:
        """The SVMs' raw decision values ``(B, n_outputs)``."""
        z = (x.float() - self.mean) / self.scale
        sq = (z * z).sum(1, keepdim=True) - 2.0 * z @ self.support.T + (self.support * self.support).sum(1)
        return torch.exp(-self.gamma * sq.clamp_min(0.0)) @ self.dual.T + self.intercept

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scores = self.platt_a * self.decision(x) + self.platt_b
        if scores.shape[1] == 1:
            return torch.cat([torch.zeros_like(scores), scores], dim=1)
        return scores
