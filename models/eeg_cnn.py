"""``eeg_cnn``: a deep 1-D ConvNet on raw EEG windows, the default seizure detector and predictor.

Filter bank, Conv-BN-ELU-pool blocks and global pooling over time (:class:`EEGConvNet`), built from the shared
blocks of :mod:`models.eeg_layers`; the interface (signature, ``forward_features`` / ``forward_head``, attributes)
is described there. Shapes in comments: B = batch, C = channels, T = time steps.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from models.eeg_layers import ConvFrontEnd, EEGClassifierBase, EEGHead, check_window, init_eeg_weights
from models.registry import register_model


class EEGConvNet(EEGClassifierBase):
    """A deep 1-D ConvNet on raw EEG: filter bank, Conv-BN-ELU-pool blocks, global pooling over time.

    Follows Schirrmeister et al. 2017 ("Deep learning with convolutional neural networks for EEG decoding and
    visualization", the Deep ConvNet: a factorised space-time first layer, then conv-BN-ELU-max-pool blocks) and
    the three-block CNN of Truong et al. 2018 ("Convolutional neural networks for seizure prediction using
    intracranial and scalp electroencephalogram", CHB-MIT), but on the raw signal instead of an STFT, so the
    first layer learns its own band filters. Global pooling makes the net accept any window of at least
    ``min_samples``.

    Args:
        n_chans: Input electrodes.
        n_times: Window length in samples (checked against the receptive field).
        n_outputs: Output logits (0: no classifier, ``forward`` returns pooled features).
        sfreq: Sampling rate in Hz.
        drop_rate: Dropout before the classifier.
        widths: Feature maps of each conv block (each halves the feature rate).
        kernel_size: Block kernel length in feature steps.
        n_spatial, depth_multiplier, filter_s: See :class:`FilterBank`.
        pool_type: Temporal pooling of the head, see :func:`temporal_pool`. ``"avgmax"`` by default: a seizure
            may fill the window or only a second of it.
    """

    def __init__(
        self,
        n_chans: int,
        n_times: int,
        n_outputs: int = 2,
        sfreq: float = 256.0,
        drop_rate: float = 0.25,
        widths: Sequence[int] = (32, 48, 64),
        kernel_size: int = 7,
        n_spatial: int = 16,
        depth_multiplier: int = 2,
        filter_s: float = 0.25,
        pool_type: str = "avgmax",
    ) -> None:
        super().__init__()
        self._set_signal(n_chans, n_times, n_outputs, sfreq, drop_rate)
        self.trunk = ConvFrontEnd(n_chans, sfreq, widths, kernel_size, n_spatial, depth_multiplier, filter_s)
        self.min_samples = self.trunk.receptive_field
        check_window(type(self).__name__, n_times, self.min_samples, sfreq)
        self.num_features = self.trunk.out_chans
        self.head = EEGHead(self.num_features, n_outputs, drop_rate, pool_type)
        init_eeg_weights(self)

    @property
    def feature_layer(self) -> nn.Module:
        """The last conv block; its output is the ``forward_features`` map (Grad-CAM target)."""
        return self.trunk.blocks[-1]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(x)  # (B, num_features, ~T * 64 / sfreq / 2^len(widths))


# --------------------------------------------------------------------------------------------- registry
@register_model("eeg")
def eeg_cnn_tiny(
    n_chans: int, n_times: int, n_outputs: int = 2, sfreq: float = 256.0, drop_rate: float = 0.25, **kwargs: object
) -> EEGConvNet:
    """A few-thousand-parameter ConvNet for tests and smoke runs."""
    args: dict = dict(widths=(8, 16), n_spatial=4, depth_multiplier=2)
    return EEGConvNet(n_chans, n_times, n_outputs, sfreq, drop_rate, **{**args, **kwargs})


@register_model("eeg")
def eeg_cnn(
    n_chans: int, n_times: int, n_outputs: int = 2, sfreq: float = 256.0, drop_rate: float = 0.25, **kwargs: object
) -> EEGConvNet:
    """Filter bank (16 virtual electrodes x 2 filters of 0.25 s) + three conv blocks (32/48/64), ~1 s receptive
    field; the default EEG model, sized to train at several hundred 4 s windows per second on two CPU cores."""
    return EEGConvNet(n_chans, n_times, n_outputs, sfreq, drop_rate, **kwargs)
