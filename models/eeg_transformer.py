"""``eeg_transformer``: a conv-tokenised transformer encoder over EEG windows.

:class:`EEGTransformer` is built from the shared blocks of :mod:`models.eeg_layers`; the interface (signature,
``forward_features`` / ``forward_head``, attributes) is described there. Shapes in comments: B = batch,
C = channels, T = time steps.
"""

from __future__ import annotations

import torch
from torch import nn

from models.eeg_layers import (
    ChannelsFirstLayerNorm,
    EEGClassifierBase,
    EEGHead,
    FilterBank,
    check_window,
    init_eeg_weights,
    receptive_field,
    sinusoidal_positions,
)
from models.registry import register_model


class EEGTransformer(EEGClassifierBase):
    """A conv-tokenised transformer encoder over time, mean-pooled into the classifier.

    A :class:`FilterBank` learns band filters at full rate and pools to ~64 Hz; a strided conv then cuts the
    sequence into ``patch_s``-second patches and embeds each as one token (the patch embedding of ViT, Dosovitskiy
    et al. 2021, over time; the conv front end before it is what makes transformers trainable on small EEG sets,
    as in Song et al. 2023, "EEG Conformer"). Fixed sinusoidal positions (Vaswani et al. 2017) are added so any
    window length works, pre-norm encoder layers (Xiong et al. 2020) train without a warm-up, and the tokens are
    mean-pooled: the classifier sees the whole window, and the feature map stays a sequence over time.

    Args:
        n_chans, n_times, n_outputs, sfreq, drop_rate: See :class:`models.eeg_cnn.EEGConvNet`.
        n_spatial, depth_multiplier, filter_s: See :class:`FilterBank`.
        patch_s: Token length in seconds (0.25 s -> 16 tokens for a 4 s window).
        embed_dim: Token width.
        depth: Encoder layers.
        num_heads: Attention heads (must divide ``embed_dim``).
        mlp_ratio: Feed-forward width as a multiple of ``embed_dim``.
        attn_drop_rate: Dropout inside the encoder layers.
        pool_type: Temporal pooling of the head, see :func:`temporal_pool`.
    """

    def __init__(
        self,
        n_chans: int,
        n_times: int,
        n_outputs: int = 2,
        sfreq: float = 256.0,
        drop_rate: float = 0.25,
        n_spatial: int = 16,
        depth_multiplier: int = 2,
        filter_s: float = 0.25,
        patch_s: float = 0.25,
        embed_dim: int = 64,
        depth: int = 3,
        num_heads: int = 4,
        mlp_ratio: float = 2.0,
        attn_drop_rate: float = 0.1,
        pool_type: str = "avg",
    ) -> None:
        super().__init__()
        self._set_signal(n_chans, n_times, n_outputs, sfreq, drop_rate)
        if embed_dim < 1 or depth < 1 or num_heads < 1 or embed_dim % num_heads:
            raise ValueError(
                f"embed_dim={embed_dim}, depth={depth}, num_heads={num_heads}: need positive values and "
                "num_heads dividing embed_dim"
            )
        if not patch_s > 0:
            raise ValueError(f"patch_s={patch_s}; give the token length in seconds, e.g. 0.25")
        self.filter_bank = FilterBank(n_chans, sfreq, n_spatial, depth_multiplier, filter_s)
        feature_rate = sfreq / self.filter_bank.decimation
        self.patch_size = max(1, int(round(patch_s * feature_rate)))  # in feature steps
        self.patch_embed = nn.Conv1d(self.filter_bank.out_chans, embed_dim, self.patch_size, stride=self.patch_size)
        self.min_samples = receptive_field(self.filter_bank.layers + [(self.patch_size, self.patch_size)])
        check_window(type(self).__name__, n_times, self.min_samples, sfreq)
        layer = nn.TransformerEncoderLayer(
            embed_dim,
            num_heads,
            dim_feedforward=int(embed_dim * mlp_ratio),
            dropout=attn_drop_rate,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        # nested tensors only help with padding masks, and PyTorch warns that pre-norm layers cannot use them
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = ChannelsFirstLayerNorm(embed_dim)
        self.num_features = embed_dim
        self.head = EEGHead(self.num_features, n_outputs, drop_rate, pool_type)
        init_eeg_weights(self)

    @property
    def feature_layer(self) -> nn.Module:
        """The final LayerNorm; its output is the ``forward_features`` map (token features over time)."""
        return self.norm

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.filter_bank(x)  # (B, n_spatial * depth_multiplier, ~T * 64 / sfreq)
        x = self.patch_embed(x).transpose(1, 2)  # (B, n_tokens, embed_dim)
        x = x + sinusoidal_positions(x.shape[1], x.shape[2], x.device).to(x.dtype)
        x = self.encoder(x)  # (B, n_tokens, embed_dim)
        return self.norm(x)  # (B, embed_dim, n_tokens)


@register_model("eeg")
def eeg_transformer_tiny(
    n_chans: int, n_times: int, n_outputs: int = 2, sfreq: float = 256.0, drop_rate: float = 0.25, **kwargs: object
) -> EEGTransformer:
    """A one-layer, 16-wide transformer for tests and smoke runs."""
    args: dict = dict(n_spatial=4, depth_multiplier=2, embed_dim=16, depth=1, num_heads=2)
    return EEGTransformer(n_chans, n_times, n_outputs, sfreq, drop_rate, **{**args, **kwargs})


@register_model("eeg")
def eeg_transformer(
    n_chans: int, n_times: int, n_outputs: int = 2, sfreq: float = 256.0, drop_rate: float = 0.25, **kwargs: object
) -> EEGTransformer:
    """Filter bank + 0.25 s patch tokens + three pre-norm encoder layers (64 wide, 4 heads), mean-pooled."""
    return EEGTransformer(n_chans, n_times, n_outputs, sfreq, drop_rate, **kwargs)
