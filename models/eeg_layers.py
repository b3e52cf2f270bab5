"""Blocks shared by the EEG window classifiers, and the interface every one of them follows.

The classifiers (``models/eeg_cnn.py``, ``models/eeg_cnn_lstm.py``, ``models/eeg_transformer.py``, one architecture
per file as in braindecode) are written from scratch (no braindecode at run time) and built from the blocks here:
the filter bank, conv blocks, the shared CNN front end, the pooling head, channels-first LSTM and LayerNorm
wrappers, sinusoidal positions, the receptive-field and argument checks, and :class:`EEGClassifierBase`.

Every model takes braindecode's signal signature ``(n_chans, n_times, n_outputs=2, sfreq=256.0, drop_rate=0.25)``
and follows the same timm-style interface as :mod:`models.images`, so one training loop, one fine-tuning path and one
attribution hook serve both modalities:

- input ``(B, n_chans, n_times)``, preferably standardised per channel (every net starts with a linear filter bank
  followed by BatchNorm, so the input's units, µV or V, do not matter to it);
- ``forward_features(x)``: ``(B, n_chans, n_times) -> (B, num_features, T')``, a map over time;
- ``forward_head(x, pre_logits=False)``: pooled ``(B, num_features)`` if ``pre_logits`` else logits
  ``(B, n_outputs)``;
- ``forward(x) == forward_head(forward_features(x))``;
- attributes ``n_chans``, ``n_times``, ``sfreq``, ``n_outputs``, ``num_features``, ``min_samples`` (the shortest
  window the net accepts) and ``feature_layer`` (the module whose output *is* the ``forward_features`` map, for
  Grad-CAM over time).

Any window length and sampling rate work: the first kernel and the first pooling are sized in seconds from
``sfreq``, so later layers always see a ~64 Hz feature sequence and the receptive field in seconds barely depends
on the sampling rate. A window shorter than a net's receptive field is rejected at construction with a
``ValueError`` that names the fix (raise ``window_s``), in braindecode's spirit.

Shapes in comments: B = batch, C = channels (electrodes or feature maps), T = time steps.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

FEATURE_HZ = 64.0
"""Rate in Hz of the feature sequence after the filter bank's pooling, whatever the input's sampling rate."""

_POOL_TYPES = ("avg", "max", "avgmax", "last")


# --------------------------------------------------------------------------------------------- helpers
def _odd(n: float) -> int:
    """The odd integer nearest to ``n`` (at least 1), so a 'same'-padded conv stays centred on its sample."""
    return max(1, 2 * int(round((n - 1) / 2)) + 1)


def receptive_field(layers: Sequence[tuple[int, int]]) -> int:
    """Receptive field in input samples of one output step of a stack of ``(kernel, stride)`` 1-D layers.

    Pools count as layers with kernel = stride. The result is also the shortest input for which every pool still
    has a full window (it is at least the product of the strides).
    """
    rf, jump = 1, 1
    for kernel, stride in layers:
        rf += (kernel - 1) * jump
        jump *= stride
    return rf


def check_signal_args(n_chans: int, n_times: int, n_outputs: int, sfreq: float, drop_rate: float) -> None:
    """Reject a signal signature that no EEG classifier can be built for, naming the value and the fix."""
    if n_chans < 1:
        raise ValueError(f"n_chans={n_chans}; an EEG window needs at least one channel")
    if n_times < 1:
        raise ValueError(f"n_times={n_times}; give the window length in samples (window_s * sfreq)")
    if n_outputs < 0:
        raise ValueError(f"n_outputs={n_outputs}; use >= 1, or 0 for a feature extractor without a classifier")
    if not sfreq > 0:
        raise ValueError(f"sfreq={sfreq}; give the sampling rate in Hz, e.g. 256.0")
    if not 0.0 <= drop_rate < 1.0:
        raise ValueError(f"drop_rate={drop_rate} must be in [0, 1)")


def check_window(name: str, n_times: int, min_samples: int, sfreq: float) -> None:
    """Reject a window shorter than the net ``name``'s receptive field at construction, not at the first batch."""
    if n_times < min_samples:
        raise ValueError(
            f"window of {n_times} samples is shorter than {name}'s minimum of {min_samples} samples "
            f"({min_samples / sfreq:.2f} s at {sfreq:g} Hz); raise window_s"
        )


def temporal_pool(x: torch.Tensor, pool_type: str = "avg", bidirectional: bool = False) -> torch.Tensor:
    """Pool a feature sequence over time, so any window length gives a fixed-size vector.

    Args:
        x: Features ``(B, C, T)``.
        pool_type: ``"avg"``, ``"max"``, ``"avgmax"`` (mean of both: the overall level and one strong burst both
            count), or ``"last"`` (the final step, the classic recurrent read-out).
        bidirectional: With ``"last"``: the second half of the channels comes from a backward RNN, whose summary of
            the whole window sits at the *first* step, so that half is read at ``t = 0``.

    Returns:
        Pooled features ``(B, C)``.
    """
    if pool_type == "avg":
        return x.mean(dim=2)
    if pool_type == "max":
        return x.amax(dim=2)
    if pool_type == "avgmax":
        return 0.5 * (x.mean(dim=2) + x.amax(dim=2))
    if pool_type == "last":
        if bidirectional:
            half = x.shape[1] // 2
            return torch.cat([x[:, :half, -1], x[:, half:, 0]], dim=1)
        return x[:, :, -1]
    raise ValueError(f"unknown pool_type {pool_type!r}; use one of {', '.join(map(repr, _POOL_TYPES))}")


def init_eeg_weights(module: nn.Module) -> None:
    """Xavier-uniform convs with zero bias (braindecode's Deep4 init) and a small-normal classifier.

    ELU nets train well from Glorot init (Schirrmeister et al. 2017); recurrent and attention layers keep PyTorch's
    own initialisation, which is already tuned for them.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv1d):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


# --------------------------------------------------------------------------------------------- blocks
class FilterBank(nn.Module):
    """Spatial mixing, then a learned temporal filter bank, then pooling down to ~``FEATURE_HZ``.

    The factorisation of Schirrmeister et al. 2017 (shallow/deep ConvNet) and Lawhern et al. 2018 (EEGNet) splits a
    full space-time conv into a spatial and a temporal part; here the spatial part comes first (a 1x1 conv to
    ``n_spatial`` "virtual electrodes", a learned montage much like CSP), followed by ``depth_multiplier``
    depthwise temporal filters per virtual electrode. Its cost therefore scales with ``n_spatial``, not with
    ``n_chans x filters``, which is what makes the first, full-rate layer cheap on a CPU.

    The temporal kernel spans ``filter_s`` seconds (0.25 s = 65 samples at 256 Hz): long enough for a frequency
    resolution of ~4 Hz, so the filters can become delta/theta/alpha/beta band-pass filters, yet short enough to
    keep spikes localised. From 224 Hz up the conv is strided to about ``2 * feature_hz`` (128 Hz: Nyquist 64 Hz,
    above the 1-40 Hz bands that matter for seizures), so it is a learned decimating FIR filter and the priciest
    layer runs at half the cost; BatchNorm + ELU then turn filter outputs into amplitude-like features, and
    max-pooling brings every sampling rate to about ``feature_hz``.

    Args:
        n_chans: Input electrodes.
        sfreq: Sampling rate in Hz.
        n_spatial: Virtual electrodes after the spatial mix.
        depth_multiplier: Temporal filters per virtual electrode.
        filter_s: Length of the temporal filters in seconds.
        feature_hz: Target rate in Hz of the output sequence.
    """

    def __init__(
        self,
        n_chans: int,
        sfreq: float,
        n_spatial: int = 16,
        depth_multiplier: int = 2,
        filter_s: float = 0.25,
        feature_hz: float = FEATURE_HZ,
    ) -> None:
        super().__init__()
        if n_spatial < 1 or depth_multiplier < 1 or not filter_s > 0 or not feature_hz > 0:
            raise ValueError(
                f"n_spatial={n_spatial}, depth_multiplier={depth_multiplier}, filter_s={filter_s}, "
                f"feature_hz={feature_hz}: all must be positive"
            )
        self.kernel_size = _odd(filter_s * sfreq)
        decimation = max(1, int(round(sfreq / feature_hz)))  # wanted input samples per output step
        self.stride = decimation // 2 if decimation >= 4 else 1  # the conv runs at >= 2 * feature_hz
        self.pool_size = decimation // self.stride
        self.decimation = self.stride * self.pool_size  # input samples per output step, exactly
        self.out_chans = n_spatial * depth_multiplier
        self.spatial = nn.Conv1d(n_chans, n_spatial, 1, bias=False)
        self.temporal = nn.Conv1d(
            n_spatial,
            self.out_chans,
            self.kernel_size,
            stride=self.stride,
            padding=self.kernel_size // 2,
            groups=n_spatial,
            bias=False,
        )
        self.bn = nn.BatchNorm1d(self.out_chans)
        self.act = nn.ELU()
        self.pool = nn.MaxPool1d(self.pool_size) if self.pool_size > 1 else nn.Identity()

    @property
    def layers(self) -> list[tuple[int, int]]:
        """``(kernel, stride)`` of each layer, for :func:`receptive_field`."""
        return [(self.kernel_size, self.stride), (self.pool_size, self.pool_size)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.spatial(x)  # (B, n_spatial, T)
        x = self.act(self.bn(self.temporal(x)))  # (B, out_chans, T / stride)
        return self.pool(x)  # (B, out_chans, T / (stride * pool_size)) ~ (B, out_chans, T * feature_hz / sfreq)


class ConvBlock1d(nn.Sequential):
    """Conv1d (no bias) -> BatchNorm -> ELU -> max-pool, the block of Schirrmeister et al.'s Deep ConvNet.

    ELU (Clevert et al. 2016) as in that paper, where it beat ReLU on raw EEG; no conv bias because BatchNorm has
    its own shift; 'same' padding, so only the pool shortens the sequence.

    Args:
        in_chans: Input feature maps.
        out_chans: Output feature maps.
        kernel_size: Odd kernel length in time steps.
        pool: Max-pool factor (1: no pooling).
    """

    def __init__(self, in_chans: int, out_chans: int, kernel_size: int = 7, pool: int = 2) -> None:
        super().__init__()
        self.kernel_size, self.pool_size = kernel_size, pool
        self.conv = nn.Conv1d(in_chans, out_chans, kernel_size, padding=kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm1d(out_chans)
        self.act = nn.ELU()
        self.pool = nn.MaxPool1d(pool) if pool > 1 else nn.Identity()

    @property
    def layers(self) -> list[tuple[int, int]]:
        """``(kernel, stride)`` of each layer, for :func:`receptive_field`."""
        return [(self.kernel_size, 1), (self.pool_size, self.pool_size)]


class ConvFrontEnd(nn.Module):
    """:class:`FilterBank` followed by :class:`ConvBlock1d` s: the shared CNN trunk of ``eeg_cnn``/``eeg_cnn_lstm``.

    Each block halves the feature rate (64 -> 32 -> 16 -> 8 Hz for three blocks), so a 4 s window ends as 32 steps
    that each see about one second of signal.

    Args:
        n_chans: Input electrodes.
        sfreq: Sampling rate in Hz.
        widths: Output feature maps of each block.
        kernel_size: Kernel length of the blocks in feature steps (7 steps = 0.11 s at 64 Hz).
        n_spatial, depth_multiplier, filter_s: See :class:`FilterBank`.
    """

    def __init__(
        self,
        n_chans: int,
        sfreq: float,
        widths: Sequence[int],
        kernel_size: int = 7,
        n_spatial: int = 16,
        depth_multiplier: int = 2,
        filter_s: float = 0.25,
    ) -> None:
        super().__init__()
        if not widths or min(widths) < 1:
            raise ValueError(f"widths={tuple(widths)} needs at least one positive block width")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size={kernel_size} must be odd, so 'same' padding stays centred")
        self.filter_bank = FilterBank(n_chans, sfreq, n_spatial, depth_multiplier, filter_s)
        blocks: list[nn.Module] = []
        prev = self.filter_bank.out_chans
        for width in widths:
            blocks.append(ConvBlock1d(prev, width, kernel_size))
            prev = width
        self.blocks = nn.Sequential(*blocks)
        self.out_chans = prev
        layers = self.filter_bank.layers + [layer for block in blocks for layer in block.layers]
        self.receptive_field = receptive_field(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.filter_bank(x)  # (B, n_spatial * depth_multiplier, ~T * 64 / sfreq)
        return self.blocks(x)  # (B, widths[-1], ~T * 64 / sfreq / 2^len(widths))


class EEGHead(nn.Module):
    """Temporal pooling -> dropout -> linear, the head shared by every EEG classifier.

    Args:
        in_features: Channels of the feature sequence.
        n_outputs: Output logits; 0 makes the head return pooled features only.
        drop_rate: Dropout probability before the linear layer.
        pool_type: See :func:`temporal_pool`.
        bidirectional: See :func:`temporal_pool`.
    """

    def __init__(
        self,
        in_features: int,
        n_outputs: int,
        drop_rate: float = 0.0,
        pool_type: str = "avg",
        bidirectional: bool = False,
    ) -> None:
        super().__init__()
        temporal_pool(torch.zeros(1, 2, 1), pool_type)  # fail at construction, not at the first batch
        self.pool_type, self.bidirectional, self.drop_rate = pool_type, bidirectional, drop_rate
        self.fc: nn.Module = nn.Linear(in_features, n_outputs) if n_outputs > 0 else nn.Identity()
        if isinstance(self.fc, nn.Linear):
            nn.init.normal_(self.fc.weight, std=0.01)
            nn.init.zeros_(self.fc.bias)

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = temporal_pool(x, self.pool_type, self.bidirectional)  # (B, C)
        if pre_logits:
            return x
        x = F.dropout(x, p=self.drop_rate, training=self.training)
        return self.fc(x)  # (B, n_outputs)


class ChannelsFirstLSTM(nn.Module):
    """An LSTM that reads and writes ``(B, C, T)``, so its output can be the ``forward_features`` map.

    ``nn.LSTM`` returns a tuple in ``(B, T, C)`` order; wrapping it gives Grad-CAM a plain tensor hook target and
    keeps every EEG net's feature map in the same layout.
    """

    def __init__(self, in_chans: int, hidden: int, num_layers: int = 1, bidirectional: bool = True) -> None:
        super().__init__()
        self.lstm = nn.LSTM(in_chans, hidden, num_layers=num_layers, batch_first=True, bidirectional=bidirectional)
        self.out_chans = hidden * (2 if bidirectional else 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x.transpose(1, 2))  # (B, T, out_chans)
        return out.transpose(1, 2)  # (B, out_chans, T)


class ChannelsFirstLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels of a ``(B, T, C)`` token sequence that returns ``(B, C, T)``.

    The transformer's final norm, so its output is the ``forward_features`` map in the common EEG layout.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x).transpose(1, 2)  # (B, T, C) -> (B, C, T)


def sinusoidal_positions(n: int, dim: int, device: torch.device | None = None) -> torch.Tensor:
    """Fixed sine/cosine position codes ``(n, dim)`` (Vaswani et al. 2017, "Attention Is All You Need").

    Fixed rather than learned codes, so a net trained on 4 s windows still runs on 30 s windows.
    """
    position = torch.arange(n, device=device, dtype=torch.float32)[:, None]  # (n, 1)
    freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10_000.0) / dim))
    pe = torch.zeros(n, dim, device=device)
    pe[:, 0::2] = torch.sin(position * freq)
    pe[:, 1::2] = torch.cos(position * freq[: dim // 2])
    return pe


# --------------------------------------------------------------------------------------------- base class
class EEGClassifierBase(nn.Module):
    """Attributes and head plumbing shared by the EEG classifiers (subclasses build the trunk)."""

    head: EEGHead

    def _set_signal(self, n_chans: int, n_times: int, n_outputs: int, sfreq: float, drop_rate: float) -> None:
        check_signal_args(n_chans, n_times, n_outputs, sfreq, drop_rate)
        self.n_chans, self.n_times, self.n_outputs, self.sfreq = n_chans, n_times, n_outputs, float(sfreq)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - every subclass overrides
        raise NotImplementedError

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, n_outputs: int) -> None:
        """Replace the classifier with a fresh one for ``n_outputs`` logits (fine-tuning, e.g. detection ->
        prediction)."""
        self.n_outputs = n_outputs
        h = self.head
        self.head = EEGHead(self.num_features, n_outputs, h.drop_rate, h.pool_type, h.bidirectional)
