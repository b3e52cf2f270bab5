"""Class-conditional GANs that synthesise training data: images (DCGAN-style) and multi-channel EEG windows.

Two families, one container and one training loop:

- **Images**: a DCGAN generator (Radford et al., 2016) that takes the noise plus a class embedding and whose
  BatchNorms are class-conditional (conditional batch norm, as in Miyato & Koyama, 2018), and a DCGAN
  discriminator with spectral normalisation on every layer (Miyato et al., 2018, "Spectral Normalization for
  GANs") and a projection head (Miyato & Koyama, 2018, "cGANs with Projection Discriminator"), trained with the
  hinge loss (Lim & Ye, 2017). Square power-of-two sizes from 16 to 128 px, grey or colour.
- **EEG**: the same design in 1-D over ``(B, n_chans, n_times)`` windows, trained as a conditional WGAN-GP
  (Gulrajani et al., 2017, "Improved Training of Wasserstein GANs"). The critic has no normalisation layers: the
  gradient penalty is taken per sample, which batch norm would break. Any ``n_times >= 16`` works: the generator
  upsamples a short seed sequence by powers of two to the first length ``>= n_times`` and centre-crops.

Data range (both families): the generator ends in ``tanh``, so it can only produce values in ``[-1, 1]`` and
:func:`fit_gan` rejects real data outside that range. Scale images with ``x / 127.5 - 1``; standardise EEG per
channel (z-scores), divide by about 4 and clip to ``[-1, 1]`` (a z-score of 4 maps to 1; only rare artefacts are
clipped).

:class:`ConditionalGAN` holds the generator, the discriminator (the "critic" for WGAN-GP) and an exponential moving
average (EMA) of the generator's weights (Yazici et al., 2019, "The Unusual Effectiveness of Averaging in GAN
Training"), which :func:`sample_gan` uses by default. :func:`fit_gan` trains it with class-balanced batches so that
a rare class gets as many generator updates as a common one, and checkpoints/resumes exactly like
:func:`models.training.fit`.

Shapes in comments: B = batch, C = channels, H/W = height/width in pixels, T = time steps, Z = noise dimension.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from models.registry import register_model
from models.training import (
    CHECKPOINT_NAME,
    _autocast,
    _cpu_state,
    _model_device,
    _rng_state,
    _set_rng_state,
    load_checkpoint,
    save_atomic,
    select_device,
)

KINDS = ("image", "eeg")
LOSSES = ("hinge", "wgan-gp")
IMAGE_SIZES = (16, 32, 64, 128)
"""Square image sizes in pixels the image GAN supports (it grows from 4 x 4 by factors of 2)."""
MIN_EEG_SAMPLES = 16
"""Shortest EEG window in samples the EEG GAN supports."""
DEFAULT_N_CRITIC = {"hinge": 1, "wgan-gp": 5}
"""Discriminator steps per generator step when :attr:`GanConfig.n_critic` is ``None`` (SAGAN's 1 for hinge with
spectral norm, Gulrajani et al.'s 5 for WGAN-GP)."""
_CHECKPOINT_VERSION = 1
_MAX_CHANNEL_MULT = 8  # image channels stop doubling at 8 x width, as in DCGAN's 64 -> 512
_EEG_CHANNEL_MULT = 4  # EEG sequences are long at every level, so wide layers cost more there


# --------------------------------------------------------------------------------------------- shared blocks
class ConditionalBatchNorm(nn.Module):
    """BatchNorm whose scale and shift are looked up per class (de Vries et al., 2017; Miyato & Koyama, 2018).

    The class enters the generator at every layer instead of only at its input, which is what makes the samples
    follow their label. Scales start at 1 and shifts at 0, so at initialisation it is a plain BatchNorm.

    Args:
        num_features: Channels ``C`` of the input ``(B, C, ...)``.
        num_classes: Number of class labels.
        dims: 1 for ``(B, C, T)`` sequences, 2 for ``(B, C, H, W)`` images.
    """

    def __init__(self, num_features: int, num_classes: int, dims: int) -> None:
        super().__init__()
        self.num_features = num_features
        self.bn = (nn.BatchNorm1d if dims == 1 else nn.BatchNorm2d)(num_features, affine=False)
        self.embed = nn.Embedding(num_classes, 2 * num_features)
        with torch.no_grad():
            self.embed.weight[:, :num_features].fill_(1.0)
            self.embed.weight[:, num_features:].zero_()

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.embed(y).chunk(2, dim=1)  # (B, C) each
        shape = (len(x), self.num_features) + (1,) * (x.ndim - 2)
        return self.bn(x) * gamma.view(shape) + beta.view(shape)


class ProjectionHead(nn.Module):
    """Linear critic output plus the class projection ``<embed(y), h>`` (Miyato & Koyama, 2018).

    The inner product with a class embedding makes the discriminator judge "is this a real sample *of class y*",
    which is a stronger conditioning signal than concatenating the label to the input.

    Args:
        in_features: Size of the feature vector ``h``.
        num_classes: Number of class labels.
        sn: Spectrally normalise the linear layer and the embedding (hinge loss); ``False`` for WGAN-GP.
    """

    def __init__(self, in_features: int, num_classes: int, sn: bool) -> None:
        super().__init__()
        self.fc = _maybe_sn(nn.Linear(in_features, 1), sn)
        self.embed = _maybe_sn(nn.Embedding(num_classes, in_features), sn)

    def forward(self, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.fc(h).squeeze(1) + (self.embed(y) * h).sum(dim=1)  # (B,)


def _maybe_sn(module: nn.Module, sn: bool) -> nn.Module:
    return spectral_norm(module) if sn else module


def _width(width: int, level: int, cap: int = _MAX_CHANNEL_MULT) -> int:
    """Channels ``level`` doublings away from the full-resolution end: ``width * 2**level``, at most ``cap * width``."""
    return width * min(2**level, cap)


def _check_common(num_classes: int, z_dim: int, width: int) -> None:
    if num_classes < 1:
        raise ValueError(f"num_classes={num_classes}; a conditional GAN needs at least one class")
    if z_dim < 1:
        raise ValueError(f"z_dim={z_dim}; the noise vector needs at least one dimension, e.g. 64")
    if width < 1:
        raise ValueError(f"width={width}; use a positive channel count, e.g. 16")


# --------------------------------------------------------------------------------------------- image GAN
class ImageGenerator(nn.Module):
    """DCGAN generator with conditional BatchNorm: ``(z, y) -> (B, in_chans, img_size, img_size)`` in [-1, 1].

    A linear layer maps ``z`` and a learned class embedding (concatenated) to a 4 x 4 map; each 4x4/2 transposed
    conv + conditional BatchNorm + ReLU doubles the size and halves the channels
    (up to ``8 * width`` at 4 x 4, ``width`` at half resolution), and, as in DCGAN, the last transposed conv goes
    straight to the image channels + tanh, so no feature map is ever stored at full resolution (the costliest part
    on a CPU).

    Args:
        in_chans: Image channels (1 grey, 3 colour).
        img_size: Height and width in pixels, one of :data:`IMAGE_SIZES`.
        num_classes: Number of class labels.
        z_dim: Noise dimension.
        width: Channels of the last hidden map (at ``img_size / 2``).
    """

    def __init__(self, in_chans: int, img_size: int, num_classes: int, z_dim: int, width: int) -> None:
        super().__init__()
        n_hidden = int(math.log2(img_size)) - 2  # hidden maps at 4, 8, ..., img_size / 2 px
        chans = [_width(width, n_hidden - 1 - i) for i in range(n_hidden)]
        self.z_dim = z_dim
        self.embed = nn.Embedding(num_classes, z_dim)  # the label also enters with the noise
        self.fc = nn.Linear(2 * z_dim, chans[0] * 16)
        self.bn0 = ConditionalBatchNorm(chans[0], num_classes, dims=2)
        self.ups = nn.ModuleList(
            nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1, bias=False)
            for c_in, c_out in zip(chans[:-1], chans[1:], strict=True)
        )
        self.bns = nn.ModuleList(ConditionalBatchNorm(c, num_classes, dims=2) for c in chans[1:])
        self.to_image = nn.ConvTranspose2d(chans[-1], in_chans, 4, stride=2, padding=1)

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.fc(torch.cat([z, self.embed(y)], dim=1)).view(len(z), -1, 4, 4)  # (B, C0, 4, 4)
        h = F.relu(self.bn0(h, y))
        for up, bn in zip(self.ups, self.bns, strict=True):
            h = F.relu(bn(up(h), y))  # (B, C, 2H, 2W)
        return torch.tanh(self.to_image(h))  # (B, in_chans, img_size, img_size)


class ImageDiscriminator(nn.Module):
    """DCGAN discriminator with spectral norm and a projection head: ``(x, y) -> (B,)`` scores.

    Each 4x4/2 conv + LeakyReLU(0.2) halves the size, from ``width`` channels doubling up to ``8 * width``, down to
    a 4 x 4 map; the flattened map is the projection head's ``h``.

    Args:
        in_chans: Image channels.
        img_size: Height and width in pixels, one of :data:`IMAGE_SIZES`.
        num_classes: Number of class labels.
        width: Channels of the first conv.
        sn: Spectral norm on every layer (needed for the hinge loss, harmless with WGAN-GP).
    """

    def __init__(self, in_chans: int, img_size: int, num_classes: int, width: int, sn: bool = True) -> None:
        super().__init__()
        n_down = int(math.log2(img_size)) - 2
        chans = [in_chans] + [_width(width, j) for j in range(n_down)]  # at img_size, img_size/2, ..., 4 px
        self.convs = nn.ModuleList(
            _maybe_sn(nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), sn)
            for c_in, c_out in zip(chans[:-1], chans[1:], strict=True)
        )
        self.head = ProjectionHead(chans[-1] * 16, num_classes, sn)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = x
        for conv in self.convs:
            h = F.leaky_relu(conv(h), 0.2)  # (B, C, H/2, W/2)
        return self.head(h.flatten(1), y)  # (B,)


# --------------------------------------------------------------------------------------------- EEG GAN
def eeg_seed_length(n_times: int) -> tuple[int, int]:
    """How the EEG generator reaches ``n_times``: ``(seed_length, n_up)`` with ``seed_length * 2**n_up >= n_times``.

    ``n_up`` (1 to 5 doublings) keeps the seed at >= 8 steps, so short windows get fewer layers and long ones a
    seed of ``ceil(n_times / 32)`` steps; the overshoot, under ``2**n_up`` samples, is centre-cropped.
    """
    n_up = min(5, max(1, int(math.log2(n_times / 8))))
    return math.ceil(n_times / 2**n_up), n_up


class EEGGenerator(nn.Module):
    """1-D generator with conditional BatchNorm: ``(z, y) -> (B, n_chans, n_times)`` in [-1, 1].

    A linear layer maps ``z`` and a learned class embedding (concatenated) to a short seed sequence (see
    :func:`eeg_seed_length`); each block (with conditional BatchNorm) doubles its length
    (nearest-neighbour upsampling then a 9-tap conv, which avoids the checkerboard ripple of transposed convs that
    would look like a spurious high-frequency rhythm) and halves the channels, from up to ``4 * width`` down to
    ``width`` at half rate. The last block upsamples, centre-crops to exactly ``n_times`` samples and convolves
    straight to ``n_chans`` + tanh, so no hidden sequence is stored at full rate.

    Args:
        n_chans: EEG channels.
        n_times: Window length in samples (>= :data:`MIN_EEG_SAMPLES`).
        num_classes: Number of class labels.
        z_dim: Noise dimension.
        width: Channels of the last hidden sequence (at half rate).
    """

    def __init__(self, n_chans: int, n_times: int, num_classes: int, z_dim: int, width: int) -> None:
        super().__init__()
        self.n_times = n_times
        self.seed_len, n_up = eeg_seed_length(n_times)
        chans = [_width(width, n_up - 1 - i, _EEG_CHANNEL_MULT) for i in range(n_up)]  # seed, ..., half rate
        self.z_dim = z_dim
        self.embed = nn.Embedding(num_classes, z_dim)  # the label also enters with the noise
        self.fc = nn.Linear(2 * z_dim, chans[0] * self.seed_len)
        self.bn0 = ConditionalBatchNorm(chans[0], num_classes, dims=1)
        self.convs = nn.ModuleList(
            nn.Conv1d(c_in, c_out, 9, padding=4, bias=False) for c_in, c_out in zip(chans[:-1], chans[1:], strict=True)
        )
        self.bns = nn.ModuleList(ConditionalBatchNorm(c, num_classes, dims=1) for c in chans[1:])
        self.to_signal = nn.Conv1d(chans[-1], n_chans, 9, padding=4)

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.fc(torch.cat([z, self.embed(y)], dim=1)).view(len(z), -1, self.seed_len)  # (B, C0, T0)
        h = F.relu(self.bn0(h, y))
        for conv, bn in zip(self.convs, self.bns, strict=True):
            h = F.interpolate(h, scale_factor=2, mode="nearest")  # (B, C, 2T)
            h = F.relu(bn(conv(h), y))
        h = F.interpolate(h, scale_factor=2, mode="nearest")  # (B, width, T0 * 2**n_up >= n_times)
        start = (h.shape[-1] - self.n_times) // 2
        h = h[..., start : start + self.n_times]  # (B, width, n_times)
        return torch.tanh(self.to_signal(h))  # (B, n_chans, n_times)


class EEGCritic(nn.Module):
    """1-D critic without normalisation layers: ``(x, y) -> (B,)`` scores.

    Strided 9-tap convs + LeakyReLU(0.2) halve the length as many times as the generator doubles it, with
    ``width`` channels doubling up to ``4 * width``; the features
    are averaged over time (windows are arbitrary crops of a recording, so the critic should not care where in the
    window an event sits) and scored by a projection head.

    Args:
        n_chans: EEG channels.
        n_times: Window length in samples.
        num_classes: Number of class labels.
        width: Channels of the first conv.
        sn: Spectral norm on every layer (for the hinge loss; WGAN-GP constrains the critic by its penalty).
    """

    def __init__(self, n_chans: int, n_times: int, num_classes: int, width: int, sn: bool = False) -> None:
        super().__init__()
        _, n_down = eeg_seed_length(n_times)
        chans = [n_chans] + [_width(width, j, _EEG_CHANNEL_MULT) for j in range(n_down)]
        self.convs = nn.ModuleList(
            _maybe_sn(nn.Conv1d(c_in, c_out, 9, stride=2, padding=4), sn)
            for c_in, c_out in zip(chans[:-1], chans[1:], strict=True)
        )
        self.head = ProjectionHead(chans[-1], num_classes, sn)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = x
        for conv in self.convs:
            h = F.leaky_relu(conv(h), 0.2)  # (B, C, T/2)
        return self.head(h.mean(dim=2), y)  # (B,)


# --------------------------------------------------------------------------------------------- container
class ConditionalGAN(nn.Module):
    """A generator, its discriminator and an EMA copy of the generator, plus what a caller needs to use them.

    Args:
        generator: ``(z (B, z_dim), y (B,)) -> (B, *sample_shape)`` in [-1, 1].
        discriminator: ``(x (B, *sample_shape), y (B,)) -> (B,)`` scores (the critic for WGAN-GP).
        kind: ``"image"`` or ``"eeg"``.
        num_classes: Number of class labels.
        z_dim: Noise dimension.
        sample_shape: Shape of one sample without the batch, e.g. ``(1, 64, 64)`` or ``(18, 1024)``.
        loss: ``"hinge"`` or ``"wgan-gp"``.

    Attributes:
        generator_ema: Exponential moving average of ``generator``'s weights (its BatchNorm statistics are copied),
            updated by :func:`fit_gan` and used by :func:`sample_gan`; it has no trainable parameters.
    """

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        *,
        kind: str,
        num_classes: int,
        z_dim: int,
        sample_shape: Sequence[int],
        loss: str,
    ) -> None:
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"kind={kind!r}; use one of {', '.join(KINDS)}")
        if loss not in LOSSES:
            raise ValueError(f"loss={loss!r}; use one of {', '.join(LOSSES)}")
        self.generator = generator
        self.discriminator = discriminator
        self.generator_ema = copy.deepcopy(generator).requires_grad_(False)
        self.kind = kind
        self.num_classes = num_classes
        self.z_dim = z_dim
        self.sample_shape = tuple(int(s) for s in sample_shape)
        self.loss = loss

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Generate with the EMA generator: ``(B, z_dim), (B,) -> (B, *sample_shape)``."""
        return self.generator_ema(z, y)


def _check_loss(loss: str) -> None:
    if loss not in LOSSES:
        raise ValueError(f"loss={loss!r}; use one of {', '.join(LOSSES)}")


def _image_gan(
    in_chans: int, img_size: int, num_classes: int, z_dim: int, width: int, loss: str, d_width: int | None
) -> ConditionalGAN:
    if in_chans < 1:
        raise ValueError(f"in_chans={in_chans}; use 1 for grey images or 3 for colour")
    if img_size not in IMAGE_SIZES:
        fits = min(IMAGE_SIZES, key=lambda s: (abs(s - img_size), s)) if img_size > 0 else IMAGE_SIZES[0]
        raise ValueError(
            f"img_size={img_size}; the image GAN needs a square power-of-two size of "
            f"{', '.join(map(str, IMAGE_SIZES))} px; resize the images to {fits} px"
        )
    _check_common(num_classes, z_dim, width)
    _check_loss(loss)
    return ConditionalGAN(
        ImageGenerator(in_chans, img_size, num_classes, z_dim, width),
        ImageDiscriminator(in_chans, img_size, num_classes, d_width or width, sn=True),
        kind="image",
        num_classes=num_classes,
        z_dim=z_dim,
        sample_shape=(in_chans, img_size, img_size),
        loss=loss,
    )


def _eeg_gan(
    n_chans: int, n_times: int, num_classes: int, z_dim: int, width: int, loss: str, d_width: int | None
) -> ConditionalGAN:
    if n_chans < 1:
        raise ValueError(f"n_chans={n_chans}; an EEG window needs at least one channel")
    if n_times < MIN_EEG_SAMPLES:
        raise ValueError(
            f"window of {n_times} samples is shorter than the EEG GAN's minimum of {MIN_EEG_SAMPLES}; raise window_s"
        )
    _check_common(num_classes, z_dim, width)
    _check_loss(loss)
    return ConditionalGAN(
        EEGGenerator(n_chans, n_times, num_classes, z_dim, width),
        EEGCritic(n_chans, n_times, num_classes, d_width or width, sn=loss == "hinge"),
        kind="eeg",
        num_classes=num_classes,
        z_dim=z_dim,
        sample_shape=(n_chans, n_times),
        loss=loss,
    )


@register_model("gan")
def gan_image(
    in_chans: int = 1,
    img_size: int = 64,
    num_classes: int = 2,
    z_dim: int = 64,
    width: int = 8,
    loss: str = "hinge",
    d_width: int | None = None,
) -> ConditionalGAN:
    """Class-conditional DCGAN with a spectral-norm projection discriminator (hinge loss).

    The default ``width=8`` (at 64 px: a 64-channel 4 x 4 map down to 8 channels at 32 x 32; 0.22 M parameters,
    0.13 M of them in the generator's input layer) makes 11-12 steps/s with batch 64 on a quiet 2-core VM (7-8
    when the machine is busy), so 1500 steps take 2-4 minutes; use ``width=32`` or more on a GPU. ``d_width``
    sets the discriminator's first-layer channels (default ``width``).
    """
    return _image_gan(in_chans, img_size, num_classes, z_dim, width, loss, d_width)


@register_model("gan")
def gan_image_tiny(
    in_chans: int = 1,
    img_size: int = 32,
    num_classes: int = 2,
    z_dim: int = 16,
    width: int = 4,
    loss: str = "hinge",
    d_width: int | None = None,
) -> ConditionalGAN:
    """A ~15 k-parameter image GAN (at 32 px) for tests and smoke runs."""
    return _image_gan(in_chans, img_size, num_classes, z_dim, width, loss, d_width)


@register_model("gan")
def gan_eeg(
    n_chans: int,
    n_times: int,
    num_classes: int = 2,
    z_dim: int = 64,
    width: int = 8,
    loss: str = "wgan-gp",
    d_width: int | None = None,
) -> ConditionalGAN:
    """Class-conditional 1-D WGAN-GP for EEG windows ``(n_chans, n_times)``, any ``n_times >= 16``.

    The default ``width=8`` (18 x 1024 windows: a 32-channel seed of 32 steps down to 8 channels at 512 steps;
    0.18 M parameters) makes about 1.7 steps/s with batch 64 and 5 critic steps on a quiet 2-core VM, where each
    critic step's gradient penalty is the costliest part; on a CPU consider ``GanConfig(n_critic=2)`` (3.6 steps/s).
    ``d_width`` sets the critic's first-layer channels (default ``width``).
    """
    return _eeg_gan(n_chans, n_times, num_classes, z_dim, width, loss, d_width)


@register_model("gan")
def gan_eeg_tiny(
    n_chans: int,
    n_times: int,
    num_classes: int = 2,
    z_dim: int = 16,
    width: int = 4,
    loss: str = "wgan-gp",
    d_width: int | None = None,
) -> ConditionalGAN:
    """A ~17 k-parameter EEG GAN (at 4 x 256) for tests and smoke runs."""
    return _eeg_gan(n_chans, n_times, num_classes, z_dim, width, loss, d_width)


# --------------------------------------------------------------------------------------------- training
@dataclass(frozen=True)
class GanConfig:
    """Hyper-parameters of :func:`fit_gan`; everything except ``device`` is part of the checkpoint fingerprint.

    Attributes:
        steps: Generator updates.
        batch_size: Real (and fake) samples per discriminator batch and fake samples per generator batch.
        lr_g: Adam learning rate of the generator.
        lr_d: Adam learning rate of the discriminator; twice ``lr_g`` by default (the two time-scale update rule,
            Heusel et al., 2017), which lets one discriminator step per generator step suffice with the hinge loss.
        betas: Adam's betas; ``(0.0, 0.9)`` (no momentum) is the usual choice for GANs since WGAN-GP and SAGAN.
        n_critic: Discriminator steps per generator step; ``None`` picks :data:`DEFAULT_N_CRITIC` for the GAN's
            loss (1 for hinge, 5 for WGAN-GP).
        gp_weight: Gradient-penalty weight lambda (WGAN-GP only; 10 in Gulrajani et al.).
        ema_decay: Decay of the generator EMA; ``None`` keeps ``generator_ema`` equal to ``generator``. Early on
            the decay is ``min(ema_decay, (1 + step) / (10 + step))`` so the average forgets the random init.
        device: ``"cuda"``, ``"cpu"``, ...; ``None`` picks CUDA when available.
        amp: bf16 autocast on CUDA; ignored on other devices. The gradient penalty is always computed in float32.
        amp_cpu: bf16 autocast on a CPU with native bf16 (see :func:`models.training.cpu_bf16_native`): measured
            1.34x more image-GAN steps per second on a 2-core AMX VM; ignored elsewhere.
        seed: Seeds the batch sampler, the noise and torch's global RNG at a fresh start; the same seed on CPU
            gives identical results.
        checkpoint_every: Generator steps between checkpoints (one is always written at the end).
        log_every: Generator steps per history row (a row is also written at the last step).
    """

    steps: int = 1500
    batch_size: int = 64
    lr_g: float = 2e-4
    lr_d: float = 4e-4
    betas: tuple[float, float] = (0.0, 0.9)
    n_critic: int | None = None
    gp_weight: float = 10.0
    ema_decay: float | None = 0.999
    device: str | None = None
    amp: bool = True
    amp_cpu: bool = False
    seed: int = 0
    checkpoint_every: int = 250
    log_every: int = 50

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps={self.steps}; train for at least 1 generator step")
        if self.batch_size < 2:
            raise ValueError(f"batch_size={self.batch_size}; the generator's BatchNorm needs at least 2, e.g. 64")
        for name in ("lr_g", "lr_d"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name}={value}; use a positive learning rate, e.g. 2e-4")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"betas={self.betas}; use two values in [0, 1), e.g. (0.0, 0.9)")
        if self.n_critic is not None and self.n_critic < 1:
            raise ValueError(f"n_critic={self.n_critic}; use >= 1, or None for the loss's default")
        if not (math.isfinite(self.gp_weight) and self.gp_weight >= 0):
            raise ValueError(f"gp_weight={self.gp_weight}; use a non-negative penalty weight, e.g. 10")
        if self.ema_decay is not None and not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay={self.ema_decay} must be in [0, 1), e.g. 0.999, or None to disable the EMA")
        if self.checkpoint_every < 1:
            raise ValueError(f"checkpoint_every={self.checkpoint_every}; use a positive number of steps")
        if self.log_every < 1:
            raise ValueError(f"log_every={self.log_every}; use a positive number of steps")


@dataclass
class GanResult:
    """What :func:`fit_gan` did; the GAN itself holds the final weights.

    Attributes:
        history: One dict per logged step: ``step`` (1-based generator step), ``d_loss`` and ``g_loss`` (means
            over the steps since the previous row), ``gp`` (mean gradient penalty, WGAN-GP only, included in
            ``d_loss``) and ``seconds`` (wall time since the previous row).
        steps_run: Generator steps completed, including those before a resume.
        resumed_from_step: Step of the checkpoint this call resumed from; ``None`` for a fresh start.
        device: The device trained on, e.g. ``"cpu"`` or ``"cuda:0"``.
        seconds: Wall time of this call.
    """

    history: list[dict]
    steps_run: int
    resumed_from_step: int | None
    device: str
    seconds: float


class ClassBalancedSampler:
    """Draws labels and sample indices so that every class present in ``y`` is equally likely.

    Each draw first picks a class uniformly among the classes present, then an item of that class uniformly, so a
    class with 5 % of the data still fills about half of a two-class batch and the GAN learns it. All randomness
    comes from the ``torch.Generator`` passed in, on the CPU.

    Args:
        y: Integer labels ``(N,)``.
    """

    def __init__(self, y: torch.Tensor) -> None:
        y = y.detach().to("cpu", torch.long)
        if y.ndim != 1 or len(y) == 0:
            raise ValueError(f"ClassBalancedSampler needs a non-empty 1-D label tensor, got shape {tuple(y.shape)}")
        self.classes, self.counts = torch.unique(y, sorted=True, return_counts=True)  # (K,), (K,)
        self.order = torch.argsort(y, stable=True)  # items grouped by class, in class order
        self.offsets = torch.cumsum(self.counts, 0) - self.counts  # (K,) where each class starts in `order`

    def labels(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` labels drawn uniformly from the classes present: ``(n,)`` long."""
        return self.classes[torch.randint(len(self.classes), (n,), generator=generator)]

    def indices(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` item indices into ``y`` and their labels, each ``(n,)`` long."""
        k = torch.randint(len(self.classes), (n,), generator=generator)  # (n,) class slots
        counts = self.counts[k]
        within = (torch.rand(n, generator=generator, dtype=torch.float64) * counts).long().clamp_max(counts - 1)
        return self.order[self.offsets[k] + within], self.classes[k]


def _check_data(gan: ConditionalGAN, x: torch.Tensor, y: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise ValueError(f"x must be a float tensor in [-1, 1], got {type(x).__name__} {getattr(x, 'dtype', '')}")
    if not isinstance(y, torch.Tensor) or y.dtype.is_floating_point or y.dtype == torch.bool or y.ndim != 1:
        raise ValueError(f"y must be a 1-D integer (long) label tensor, got {getattr(y, 'dtype', type(y).__name__)}")
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} samples but y has {len(y)} labels; pass one label per sample")
    if len(x) == 0:
        raise ValueError("fit_gan got no samples; check the class filter and the training split")
    if tuple(x.shape[1:]) != gan.sample_shape:
        raise ValueError(
            f"x has samples of shape {tuple(x.shape[1:])} but the GAN makes {gan.sample_shape}; build the GAN for "
            "this data (in_chans/img_size or n_chans/n_times) or resize the data"
        )
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or hi >= gan.num_classes:
        raise ValueError(f"labels span [{lo}, {hi}] but the GAN has num_classes={gan.num_classes}; use 0..C-1")
    lo_x, hi_x = (float(v) for v in torch.aminmax(x))  # one pass, no full-size temporary; NaN propagates
    if not (math.isfinite(lo_x) and math.isfinite(hi_x)):
        raise ValueError("x contains NaN or infinite values; fix or drop those samples first")
    peak = max(-lo_x, hi_x)
    if peak > 1.0 + 1e-3:
        raise ValueError(
            f"x reaches |{peak:.3g}| but the generator's tanh output is limited to [-1, 1]; scale the data first "
            "(images: x / 127.5 - 1; EEG: per-channel z-scores / 4, clipped to [-1, 1])"
        )


def _fingerprint(config: GanConfig, gan: ConditionalGAN, x: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
    """What a checkpoint must agree on to be resumed; stored readable (json types) so a mismatch can name it."""
    fields = asdict(config)
    fields.pop("device")  # resuming a CPU run on a GPU (or vice versa) is legitimate
    shapes = [(k, list(v.shape)) for k, v in gan.state_dict().items()]
    arch = [type(gan.generator).__name__, type(gan.discriminator).__name__, gan.kind, gan.loss, shapes]
    fingerprint = {
        "config": fields,
        "data_shape": list(x.shape),
        "class_counts": torch.bincount(y.detach().cpu().long(), minlength=gan.num_classes).tolist(),
        "model": hashlib.sha256(json.dumps(arch).encode()).hexdigest()[:16],
    }
    return json.loads(json.dumps(fingerprint))  # tuples -> lists, as a checkpoint round trip would


@torch.no_grad()
def _update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    for e, p in zip(ema.parameters(), model.parameters(), strict=True):
        e.lerp_(p, 1.0 - decay)
    for e, b in zip(ema.buffers(), model.buffers(), strict=True):
        e.copy_(b)  # BatchNorm statistics of the live generator, the usual practice for EMA generators


def _gradient_penalty(
    critic: nn.Module, real: torch.Tensor, fake: torch.Tensor, y: torch.Tensor, eps: torch.Tensor
) -> torch.Tensor:
    """``E[(||grad_x D(x_hat, y)|| - 1)^2]`` at ``x_hat = eps * real + (1 - eps) * fake`` (Gulrajani et al., 2017).

    Always in float32: the penalty differentiates a gradient, and bf16's 8-bit mantissa makes that second-order
    term noisy enough to destabilise the critic.
    """
    x_hat = (eps * real.float() + (1.0 - eps) * fake.float()).requires_grad_(True)  # (B, *sample_shape)
    with torch.autocast(real.device.type, enabled=False):
        out = critic(x_hat, y).float()  # (B,)
    (grad,) = torch.autograd.grad(out.sum(), x_hat, create_graph=True)
    return ((grad.flatten(1).norm(2, dim=1) - 1.0) ** 2).mean()


def _d_loss(
    gan: ConditionalGAN,
    real: torch.Tensor,
    fake: torch.Tensor,
    y: torch.Tensor,
    eps: torch.Tensor | None,
    gp_weight: float,
    amp: bool,
    amp_cpu: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Discriminator loss on a real and a fake batch of the same labels, plus the gradient penalty (WGAN-GP)."""
    with _autocast(real.device, amp, amp_cpu):
        # one forward for both halves: one spectral-norm power iteration per step, as in the reference code
        scores = gan.discriminator(torch.cat([real, fake]), torch.cat([y, y])).float()  # (2B,)
    d_real, d_fake = scores.chunk(2)
    if gan.loss == "hinge":
        return F.relu(1.0 - d_real).mean() + F.relu(1.0 + d_fake).mean(), None
    loss = d_fake.mean() - d_real.mean()  # minus the critic's Wasserstein estimate
    if eps is None:
        return loss, torch.zeros((), device=real.device)
    gp = _gradient_penalty(gan.discriminator, real, fake, y, eps)
    return loss + gp_weight * gp, gp


def _check_finite(values: dict[str, float], step: int, config: GanConfig) -> None:
    bad = {k: v for k, v in values.items() if not math.isfinite(v)}
    if bad:
        raise FloatingPointError(
            f"GAN training diverged by step {step}: {', '.join(f'{k}={v}' for k, v in bad.items())}; lower "
            f"GanConfig.lr_d/lr_g (now {config.lr_d:g}/{config.lr_g:g}) or check the data for outliers"
        )


def fit_gan(
    gan: ConditionalGAN,
    x: torch.Tensor,
    y: torch.Tensor,
    config: GanConfig,
    *,
    checkpoint_dir: str | Path | None = None,
    on_step_end: Callable[[int, int, dict[str, float]], None] | None = None,
) -> GanResult:
    """Train a :class:`ConditionalGAN` with Adam on class-balanced batches.

    Each generator step is preceded by ``n_critic`` discriminator steps. A discriminator step draws a real batch
    with :class:`ClassBalancedSampler` and fakes for the same labels; the generator step draws fresh class-balanced
    labels. Every random draw (batches, labels, noise, WGAN-GP interpolation weights) comes from one CPU
    ``torch.Generator`` seeded with ``config.seed``, so a run does not depend on the device's RNG. After each
    generator step ``generator_ema`` moves towards ``generator``.

    With ``checkpoint_dir``, ``last.pt`` there is rewritten atomically every ``config.checkpoint_every`` steps and
    at the end with everything needed to continue exactly (GAN incl. EMA, optimizers, history, RNG states). If it
    exists when ``fit_gan`` starts, training resumes at the next step; a finished checkpoint returns its result
    without training. On CPU a resumed run reproduces the uninterrupted one bit for bit.

    Losses are read from the device (which makes CUDA wait) only for history rows, checkpoints and
    ``on_step_end``; a NaN or infinite loss is therefore caught by the next of those, and never checkpointed.

    Args:
        gan: The GAN; moved to the training device and left in training mode.
        x: Real samples ``(N, *gan.sample_shape)``, float in [-1, 1] (see the module docstring for scaling). Pass
            it on the training device to save a host-to-device copy per batch.
        y: Labels ``(N,)`` in ``[0, gan.num_classes)``; only classes present are generated during training.
        config: Hyper-parameters; see :class:`GanConfig`.
        checkpoint_dir: Folder for ``last.pt``; created if missing. ``None`` disables checkpoints.
        on_step_end: Called as ``on_step_end(step, n_steps, losses)`` after each generator step (``step`` counts
            from 1) and after that step's checkpoint, so raising from it loses no checkpointed work; ``losses`` has
            ``d_loss``, ``g_loss`` and, for WGAN-GP, ``gp`` of that step.

    Returns:
        The :class:`GanResult`.

    Raises:
        ValueError: If the data do not fit the GAN (shape, labels, range, lengths) or ``last.pt`` was written by
            another setup (config, data shape, class counts or architecture; start a fresh run).
        FloatingPointError: If a loss becomes NaN or infinite.
    """
    t_start = time.perf_counter()
    _check_data(gan, x, y)
    device = select_device(config.device)
    amp = config.amp and device.type == "cuda"
    amp_cpu = config.amp_cpu
    n_critic = config.n_critic or DEFAULT_N_CRITIC[gan.loss]
    wgan = gan.loss == "wgan-gp"
    use_gp = wgan and config.gp_weight > 0
    batch = config.batch_size
    gan.to(device).train()
    gan.generator.requires_grad_(True)
    gan.discriminator.requires_grad_(True)  # in case an interrupted call left it frozen mid generator step
    sampler = ClassBalancedSampler(y)

    fused = device.type == "cuda"  # one kernel launch for the whole update instead of one per tensor
    opt_g = torch.optim.Adam(gan.generator.parameters(), lr=config.lr_g, betas=config.betas, fused=fused)
    opt_d = torch.optim.Adam(gan.discriminator.parameters(), lr=config.lr_d, betas=config.betas, fused=fused)

    fingerprint = _fingerprint(config, gan, x, y)
    ckpt_path = None
    if checkpoint_dir is not None:
        Path(checkpoint_dir).mkdir(parents=True, exist_ok=True)
        ckpt_path = Path(checkpoint_dir) / CHECKPOINT_NAME

    rng = torch.Generator()  # CPU: the same draws whatever the training device
    history: list[dict] = []
    window = {"d_loss": 0.0, "g_loss": 0.0, "gp": 0.0, "n": 0}  # sums since the last history row
    start_step, resumed_from, finished = 1, None, False
    if ckpt_path is not None and ckpt_path.exists():
        ckpt = load_checkpoint(ckpt_path, fingerprint, _CHECKPOINT_VERSION, setup="GAN training")
        gan.load_state_dict(ckpt["model"])
        opt_g.load_state_dict(ckpt["opt_g"])
        opt_d.load_state_dict(ckpt["opt_d"])
        history, window = ckpt["history"], ckpt["window"]
        rng.set_state(ckpt["sampler_rng"])
        _set_rng_state(ckpt["rng"])
        resumed_from, finished = ckpt["step"], ckpt["finished"]
        start_step = resumed_from + 1
    else:
        torch.manual_seed(config.seed)
        rng.manual_seed(config.seed)

    # running sums stay on the device so CUDA never waits for them between reads
    sums = {k: torch.tensor(window[k], dtype=torch.float32, device=device) for k in ("d_loss", "g_loss", "gp")}
    n_window = int(window["n"])
    eps_shape = (batch,) + (1,) * len(gan.sample_shape)
    t_row = time.perf_counter()
    step = resumed_from or 0
    for step in range(start_step, config.steps + 1):  # empty for a finished checkpoint
        d_step = torch.zeros((), device=device)
        gp_step = torch.zeros((), device=device)
        for _ in range(n_critic):
            idx, labels = sampler.indices(batch, rng)
            z = torch.randn(batch, gan.z_dim, generator=rng)
            eps = torch.rand(eps_shape, generator=rng).to(device) if use_gp else None
            real = x[idx.to(x.device)].to(device, non_blocking=True)  # (B, *sample_shape)
            yb = labels.to(device, non_blocking=True)
            with torch.no_grad(), _autocast(device, amp, amp_cpu):
                fake = gan.generator(z.to(device), yb)
            d_loss, gp = _d_loss(gan, real, fake, yb, eps, config.gp_weight, amp, amp_cpu)
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
            d_step += d_loss.detach()
            if gp is not None:
                gp_step += gp.detach()

        labels = sampler.labels(batch, rng).to(device, non_blocking=True)
        z = torch.randn(batch, gan.z_dim, generator=rng).to(device)
        gan.discriminator.requires_grad_(False)  # the generator step needs gradients w.r.t. inputs only
        with _autocast(device, amp, amp_cpu):
            g_loss = -gan.discriminator(gan.generator(z, labels), labels).float().mean()
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        gan.discriminator.requires_grad_(True)
        decay = 0.0 if config.ema_decay is None else min(config.ema_decay, (1.0 + step) / (10.0 + step))
        _update_ema(gan.generator_ema, gan.generator, decay)

        step_losses = {"d_loss": d_step / n_critic, "g_loss": g_loss.detach(), "gp": gp_step / n_critic}
        for k, v in step_losses.items():
            sums[k] += v
        n_window += 1

        if step % config.log_every == 0 or step == config.steps:
            now = time.perf_counter()
            row: dict[str, Any] = {"step": step, **{k: float(v) / n_window for k, v in sums.items()}}
            _check_finite({k: v for k, v in row.items() if k != "step"}, step, config)
            if not wgan:
                row.pop("gp")
            row["seconds"] = now - t_row
            history.append(row)
            for v in sums.values():
                v.zero_()
            n_window, t_row = 0, now

        finished = step == config.steps
        if ckpt_path is not None and (step % config.checkpoint_every == 0 or finished):
            window = {k: float(v) for k, v in sums.items()} | {"n": n_window}
            _check_finite({k: v for k, v in window.items() if k != "n"}, step, config)
            save_atomic(
                {
                    "version": _CHECKPOINT_VERSION,
                    "fingerprint": fingerprint,
                    "step": step,
                    "finished": finished,
                    "model": _cpu_state(gan),
                    "opt_g": opt_g.state_dict(),
                    "opt_d": opt_d.state_dict(),
                    "history": history,
                    "window": window,
                    "sampler_rng": rng.get_state(),
                    "rng": _rng_state(),
                },
                ckpt_path,
            )
        if on_step_end is not None:
            losses = {k: float(v) for k, v in step_losses.items() if wgan or k != "gp"}
            _check_finite(losses, step, config)
            on_step_end(step, config.steps, losses)

    return GanResult(
        history=copy.deepcopy(history),
        steps_run=step,
        resumed_from_step=resumed_from,
        device=str(device),
        seconds=time.perf_counter() - t_start,
    )


def sample_gan(
    gan: ConditionalGAN,
    labels: Sequence[int] | np.ndarray | torch.Tensor,
    *,
    seed: int,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    use_ema: bool = True,
) -> np.ndarray:
    """Generate one sample per label, deterministically for a seed.

    The noise for all samples is drawn at once from a CPU generator seeded with ``seed``, and the generator runs in
    eval mode (BatchNorm uses its running statistics, so each sample depends only on its own noise and label):
    the same seed gives the same samples whatever ``batch_size``, up to float rounding across devices.

    Args:
        gan: A trained :class:`ConditionalGAN`; moved to ``device``. Its training/eval mode is restored.
        labels: Class label per sample ``(n,)``, each in ``[0, gan.num_classes)``.
        seed: Seeds the noise.
        batch_size: Samples per forward pass (memory only; results do not depend on it).
        device: Where to run; ``None`` uses the device the GAN's parameters are on.
        use_ema: Sample from ``generator_ema`` (smoother, usually better) instead of ``generator``.

    Returns:
        ``(n, *gan.sample_shape)`` float32 array in [-1, 1].

    Raises:
        ValueError: If a label is out of range or ``batch_size < 1``.
    """
    y = labels.detach().cpu() if isinstance(labels, torch.Tensor) else torch.as_tensor(np.asarray(labels))
    if y.numel() == 0:
        return np.zeros((0, *gan.sample_shape), dtype=np.float32)
    if y.ndim != 1 or y.dtype.is_floating_point or y.dtype == torch.bool:
        raise ValueError(f"labels must be a 1-D sequence of integer class labels, got {y.dtype} of shape {y.shape}")
    y = y.long()
    if int(y.min()) < 0 or int(y.max()) >= gan.num_classes:
        raise ValueError(
            f"labels span [{int(y.min())}, {int(y.max())}] but the GAN has num_classes={gan.num_classes}; use 0..C-1"
        )
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be >= 1")
    dev = _model_device(gan) if device is None else torch.device(device)
    gan.to(dev)
    z = torch.randn(len(y), gan.z_dim, generator=torch.Generator().manual_seed(seed))  # (n, Z)
    net = gan.generator_ema if use_ema else gan.generator
    was_training = net.training
    net.eval()
    out: list[torch.Tensor] = []
    try:
        with torch.inference_mode():
            for i in range(0, len(y), batch_size):
                out.append(net(z[i : i + batch_size].to(dev), y[i : i + batch_size].to(dev)).float().cpu())
    finally:
        net.train(was_training)
    return torch.cat(out).numpy()
