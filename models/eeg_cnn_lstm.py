"""``eeg_cnn_lstm``: the ``eeg_cnn`` front end read over time by a (bi)LSTM.

:class:`EEGConvLSTM` is built from the shared blocks of :mod:`models.eeg_layers`; the interface (signature,
``forward_features`` / ``forward_head``, attributes) is described there. Shapes in comments: B = batch,
C = channels, T = time steps.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from models.eeg_layers import (
    ChannelsFirstLSTM,
    ConvFrontEnd,
    EEGClassifierBase,
    EEGHead,
    check_window,
    init_eeg_weights,
)
from models.registry import register_model


class EEGConvLSTM(EEGClassifierBase):
    """A CNN front end that turns the window into a short feature sequence, read by a (bi)LSTM.

    The CNN (see :class:`ConvFrontEnd`) learns local band/spike features at ~1 s scale and downsamples them to
    ~8 Hz; the LSTM then models how they evolve across the window, the recurrent read-out of Tsiouris et al. 2018
    ("A long short-term memory deep learning network for the prediction of epileptic seizures using EEG signals",
    CHB-MIT). It is bidirectional by default, so a seizure onset late in the window is seen with the context before
    it and early in the window with the context after it.

    Args:
        n_chans, n_times, n_outputs, sfreq, drop_rate: See :class:`models.eeg_cnn.EEGConvNet`.
        widths, kernel_size, n_spatial, depth_multiplier, filter_s: The CNN front end, see :class:`ConvFrontEnd`.
        hidden: LSTM hidden size per direction.
        num_layers: Stacked LSTM layers.
        bidirectional: Run a second LSTM backwards in time.
        pool_type: ``"avg"`` (mean hidden state: gradients reach every step, trains fastest) or ``"last"`` (the final
            hidden state of each direction); see :func:`temporal_pool`.
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
        hidden: int = 64,
        num_layers: int = 1,
        bidirectional: bool = True,
        pool_type: str = "avg",
    ) -> None:
        super().__init__()
        self._set_signal(n_chans, n_times, n_outputs, sfreq, drop_rate)
        if hidden < 1 or num_layers < 1:
            raise ValueError(f"hidden={hidden} and num_layers={num_layers} must be >= 1")
        self.front = ConvFrontEnd(n_chans, sfreq, widths, kernel_size, n_spatial, depth_multiplier, filter_s)
        self.min_samples = self.front.receptive_field
        check_window(type(self).__name__, n_times, self.min_samples, sfreq)
        self.rnn = ChannelsFirstLSTM(self.front.out_chans, hidden, num_layers, bidirectional)
        self.num_features = self.rnn.out_chans
        self.head = EEGHead(self.num_features, n_outputs, drop_rate, pool_type, bidirectional)
        init_eeg_weights(self)

    @property
    def feature_layer(self) -> nn.Module:
        """The LSTM wrapper; its output is the ``forward_features`` map (hidden states over time)."""
        return self.rnn

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.front(x)  # (B, widths[-1], T')
        return self.rnn(x)  # (B, hidden * directions, T')


@register_model("eeg")
def eeg_cnn_lstm_tiny(
    n_chans: int, n_times: int, n_outputs: int = 2, sfreq: float = 256.0, drop_rate: float = 0.25, **kwargs: object
) -> EEGConvLSTM:
    """A tiny CNN-biLSTM for tests and smoke runs."""
    args: dict = dict(widths=(8, 16), n_spatial=4, depth_multiplier=2, hidden=8)
    return EEGConvLSTM(n_chans, n_times, n_outputs, sfreq, drop_rate, **{**args, **kwargs})


@register_model("eeg")
def eeg_cnn_lstm(
    n_chans: int, n_times: int, n_outputs: int = 2, sfreq: float = 256.0, drop_rate: float = 0.25, **kwargs: object
) -> EEGConvLSTM:
    """The ``eeg_cnn`` trunk (to ~8 Hz) read by a one-layer biLSTM of 64 units per direction."""
    return EEGConvLSTM(n_chans, n_times, n_outputs, sfreq, drop_rate, **kwargs)
