"""Class-conditional GAN networks that synthesise training data: images (DCGAN-style) and multi-channel EEG windows.

Two families in one container:

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
:func:`models.gan_training.fit_gan` rejects real data outside that range. Scale images with ``x / 127.5 - 1``;
standardise EEG per channel (z-scores), divide by about 4 and clip to ``[-1, 1]`` (a z-score of 4 maps to 1; only
rare artefacts are clipped).

:class:`ConditionalGAN` holds the generator, the discriminator (the "critic" for WGAN-GP) and an exponential moving
average (EMA) of the generator's weights (Yazici et al., 2019, "The Unusual Effectiveness of Averaging in GAN
Training"). Training and sampling live in :mod:`models.gan_training`; the ``gan_*`` factories here are registered
with :mod:`models.registry`.

Shapes in comments: B = batch, C = channels, H/W = height/width in pixels, T = time steps, Z = noise dimension.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from models.registry import register_model

KINDS = ("image", "eeg")
LOSSES = ("hinge", "wgan-gp")
IMAGE_SIZES = (16, 32, 64, 128)
"""Square image sizes in pixels the image GAN supports (it grows from 4 x 4 by factors of 2)."""
MIN_EEG_SAMPLES = 16
"""Shortest EEG window in samples the EEG GAN supports."""
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
            updated by :func:`models.gan_training.fit_gan` and used by :func:`models.gan_training.sample_gan`; it has
            no trainable parameters.
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
    critic step's gradient penalty is the costliest part; on a CPU consider
    ``models.gan_training.GanConfig(n_critic=2)`` (3.6 steps/s).
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
